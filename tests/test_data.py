import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genreflow.models.images import examples_for_split, image_dataset, load_images
from genreflow.names import GTZAN_GENRES
from genreflow.scoring import genre_labels

SIZE = 32


def _write_png(path, pixels, mode="L"):
    Image.fromarray(pixels, mode=mode).save(path)
    return str(path)


@pytest.fixture
def feature_dir(tmp_path):
    """An index of 3 clips x 2 segments with random images, plus a manifest."""
    rng = np.random.default_rng(0)
    rows, pixels = [], {}
    # Written out of order so that sorting by clip, segment is exercised.
    for clip, genre in [
        ("rock.00002", "rock"),
        ("blues.00010", "blues"),
        ("blues.00003", "blues"),
    ]:
        for segment in (1, 0):
            image = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
            path = _write_png(tmp_path / f"{clip}.{segment}.png", image)
            pixels[path] = image
            rows.append(
                {"clip": clip, "segment": segment, "genre": genre, "image": path}
            )
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    pd.DataFrame(
        {"clip": ["rock.00002", "blues.00003"], "genre": ["rock", "blues"]}
    ).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path, pixels


def test_examples_for_split_joins_and_sorts(feature_dir):
    directory, _ = feature_dir
    examples = examples_for_split(directory / "index.csv", directory / "train.csv", GTZAN_GENRES)
    assert list(examples.columns) == ["clip", "segment", "genre", "image", "label"]
    assert list(zip(examples["clip"], examples["segment"])) == [
        ("blues.00003", 0),
        ("blues.00003", 1),
        ("rock.00002", 0),
        ("rock.00002", 1),
    ]
    assert examples["label"].tolist() == [0, 0, 9, 9]
    assert all(
        image.endswith(f"{clip}.{segment}.png")
        for clip, segment, image in zip(
            examples["clip"], examples["segment"], examples["image"]
        )
    )


def test_manifest_clip_without_image_names_files(feature_dir):
    directory, _ = feature_dir
    pd.DataFrame(
        {"clip": ["jazz.00001", "blues.00003"], "genre": ["jazz", "blues"]}
    ).to_csv(directory / "valid.csv", index=False)
    with pytest.raises(ValueError) as error:
        examples_for_split(directory / "index.csv", directory / "valid.csv", GTZAN_GENRES)
    message = str(error.value)
    assert "jazz.00001" in message and "valid.csv" in message and "index.csv" in message


def test_genre_disagreement_and_unknown_genre(feature_dir):
    directory, _ = feature_dir
    pd.DataFrame({"clip": ["rock.00002"], "genre": ["pop"]}).to_csv(
        directory / "bad.csv", index=False
    )
    with pytest.raises(ValueError, match="rock.00002"):
        examples_for_split(directory / "index.csv", directory / "bad.csv", GTZAN_GENRES)
    with pytest.raises(ValueError, match=r"some.csv: genre\(s\) \[.polka.\] are not in dataset.genres"):
        genre_labels(["blues", "polka"], GTZAN_GENRES, "some.csv")
    assert genre_labels(GTZAN_GENRES, GTZAN_GENRES, "x").tolist() == list(range(10))
    # labels are positions in the run's own genres, whatever they are called
    assert genre_labels(["zouk", "ambient", "zouk"], ["ambient", "drone", "zouk"], "x").tolist() == [2, 0, 2]


def test_examples_are_labelled_by_the_runs_own_genres(feature_dir):
    directory, _ = feature_dir
    examples = examples_for_split(directory / "index.csv", directory / "train.csv", ["rock", "blues"])
    assert examples["label"].tolist() == [1, 1, 0, 0]


def test_load_images_round_trip(feature_dir):
    _, pixels = feature_dir
    paths = sorted(pixels)
    images = load_images(paths, SIZE)
    assert images.dtype == np.uint8 and images.shape == (len(paths), SIZE, SIZE)
    for path, image in zip(paths, images):
        np.testing.assert_array_equal(image, pixels[path])


def test_load_images_rejects_wrong_size_or_mode(tmp_path):
    small = _write_png(tmp_path / "small.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="32x32"):
        load_images([small], SIZE)
    rgb = _write_png(
        tmp_path / "rgb.png", np.zeros((SIZE, SIZE, 3), np.uint8), mode="RGB"
    )
    with pytest.raises(ValueError, match="grayscale"):
        load_images([rgb], SIZE)


def _collect(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_dataset_in_order_without_shuffle(feature_dir):
    _, pixels = feature_dir
    paths = sorted(pixels)
    labels = np.arange(len(paths))
    dataset = image_dataset(
        paths, labels, SIZE, batch_size=4, shuffle=False, seed=0, preprocess=None
    )
    images, got_labels = _collect(dataset)
    assert images.dtype == np.float32 and images.shape == (len(paths), SIZE, SIZE, 3)
    np.testing.assert_array_equal(got_labels, labels)
    expected = np.stack([pixels[p] for p in paths]).astype(np.float32)
    for channel in range(3):
        np.testing.assert_array_equal(images[..., channel], expected)
    # Second pass comes from the cache and must be identical.
    np.testing.assert_array_equal(_collect(dataset)[0], images)


def test_dataset_applies_backbone_preprocessing(feature_dir):
    _, pixels = feature_dir
    paths = sorted(pixels)
    preprocess = keras.applications.vgg16.preprocess_input
    dataset = image_dataset(
        paths, None, SIZE, batch_size=3, shuffle=False, seed=0, preprocess=preprocess
    )
    images = np.concatenate([batch.numpy() for batch in dataset])
    rgb = np.repeat(np.stack([pixels[p] for p in paths])[..., None], 3, axis=-1).astype(
        np.float32
    )
    np.testing.assert_allclose(images, preprocess(rgb.copy()), atol=1e-4)


def test_seeded_shuffle(feature_dir):
    _, pixels = feature_dir
    paths = sorted(pixels)
    labels = np.arange(len(paths))

    def epoch_orders(seed):
        dataset = image_dataset(
            paths, labels, SIZE, batch_size=2, shuffle=True, seed=seed, preprocess=None
        )
        return [_collect(dataset)[1].tolist() for _ in range(3)]

    first = epoch_orders(1)
    assert first == epoch_orders(1)
    assert all(sorted(order) == labels.tolist() for order in first)
    # Reshuffled each epoch, and images stay with their labels.
    assert len({tuple(order) for order in first}) > 1
    dataset = image_dataset(
        paths, labels, SIZE, batch_size=6, shuffle=True, seed=1, preprocess=None
    )
    images, got = _collect(dataset)
    for image, label in zip(images, got):
        np.testing.assert_array_equal(image[..., 0], pixels[paths[label]])


def test_dataset_rejects_wrong_size_and_label_count(feature_dir):
    _, pixels = feature_dir
    paths = sorted(pixels)
    with pytest.raises(ValueError, match="labels"):
        image_dataset(paths, [0], SIZE, 2, False, 0, None)
    with pytest.raises(Exception, match="shape"):
        list(image_dataset(paths, None, 48, 2, False, 0, None))
