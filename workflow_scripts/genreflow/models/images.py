"""Input pipeline: from the feature index and split manifests to model-ready batches.

The feature stage writes one grayscale PNG per clip segment; the split stage decides
which clips belong to train/valid/test. Everything here joins those two contracts and
turns PNGs into the 3-channel float tensors the ImageNet backbones expect.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from genreflow.scoring import genre_labels

INDEX_COLUMNS = ("clip", "segment", "genre", "image")
MANIFEST_COLUMNS = ("clip", "genre")


def _read_csv_with_columns(
    path: str | os.PathLike, columns: Sequence[str]
) -> pd.DataFrame:
    # Clip ids look numeric after the dot ("blues.00003"); keep them as text.
    frame = pd.read_csv(path, dtype={"clip": str, "genre": str})
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected {list(columns)}"
        )
    return frame


def _check_no_missing_images(joined: pd.DataFrame, index_csv, manifest_csv) -> None:
    missing = joined.loc[joined["image"].isna(), "clip"].unique()
    if len(missing):
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} clip(s) of split manifest {manifest_csv} have no image in "
            f"feature index {index_csv}: {shown}"
        )


def _check_genres_agree(joined: pd.DataFrame, index_csv, manifest_csv) -> None:
    # A disagreement means the index and the manifest come from different datasets
    # or runs; training on it would silently use wrong labels.
    clash = joined[joined["genre_index"] != joined["genre"]]
    if len(clash):
        row = clash.iloc[0]
        raise ValueError(
            f"genre of clip {row['clip']} differs between {manifest_csv} "
            f"({row['genre']}) and {index_csv} ({row['genre_index']})"
        )


def examples_for_split(
    index_csv: str | os.PathLike, manifest_csv: str | os.PathLike, genres: Sequence[str]
) -> pd.DataFrame:
    """Image rows of the clips in one split manifest.

    Returns columns clip, segment, genre, image, label (the genre's position in `genres`,
    dataset.genres), sorted by clip then segment, so that every consumer sees the same order.
    """
    index = _read_csv_with_columns(index_csv, INDEX_COLUMNS)
    manifest = _read_csv_with_columns(manifest_csv, MANIFEST_COLUMNS)
    joined = manifest[list(MANIFEST_COLUMNS)].merge(
        index[list(INDEX_COLUMNS)].rename(columns={"genre": "genre_index"}),
        on="clip",
        how="left",
    )
    _check_no_missing_images(joined, index_csv, manifest_csv)
    _check_genres_agree(joined, index_csv, manifest_csv)
    examples = joined.drop(columns="genre_index")
    examples["segment"] = examples["segment"].astype(int)
    examples["label"] = genre_labels(examples["genre"], genres, str(manifest_csv))
    examples = examples.sort_values(["clip", "segment"], kind="mergesort")
    return examples.reset_index(drop=True)[
        ["clip", "segment", "genre", "image", "label"]
    ]


def _load_one_image(path: str | os.PathLike, image_size: int) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode != "L":
            raise ValueError(
                f"{path}: expected an 8-bit grayscale PNG, got mode {image.mode}"
            )
        if image.size != (image_size, image_size):
            raise ValueError(
                f"{path}: expected {image_size}x{image_size} pixels, got "
                f"{image.size[0]}x{image.size[1]}"
            )
        return np.asarray(image, dtype=np.uint8)


def load_images(paths: Sequence[str | os.PathLike], image_size: int) -> np.ndarray:
    """Decode PNGs eagerly into a uint8 array of shape (N, image_size, image_size)."""
    if len(paths) == 0:
        return np.zeros((0, image_size, image_size), dtype=np.uint8)
    return np.stack([_load_one_image(path, image_size) for path in paths])


def _decode_png(path: tf.Tensor, image_size: int) -> tf.Tensor:
    image = tf.io.decode_png(tf.io.read_file(path), channels=1, dtype=tf.uint8)
    # Fails at runtime with the offending shape if the feature stage used another size.
    return tf.ensure_shape(image, (image_size, image_size, 1))


def to_backbone_input(images: tf.Tensor, preprocess: Callable | None) -> tf.Tensor:
    """uint8 gray (..., H, W, 1) -> backbone input (..., H, W, 3) float32."""
    # ImageNet backbones expect RGB in 0..255 before their own preprocess_input;
    # replicating the gray channel keeps the pretrained first-layer filters usable.
    rgb = tf.repeat(tf.cast(images, tf.float32), repeats=3, axis=-1)
    return preprocess(rgb) if preprocess is not None else rgb


def image_dataset(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int] | np.ndarray | None,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    preprocess: Callable | None,
) -> tf.data.Dataset:
    """Batched tf.data pipeline yielding (images, labels), or images when labels is None.

    PNG decoding is the expensive step, so decoded images are cached once (as uint8,
    a twelfth of the float RGB size) and the cheap float conversion and backbone
    preprocessing run vectorised per batch; prefetching overlaps that with training.
    """
    paths = [os.fspath(path) for path in paths]
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    images = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    images = images.map(
        lambda path: _decode_png(path, image_size), num_parallel_calls=tf.data.AUTOTUNE
    )
    if labels is None:
        dataset = images
    else:
        label_ds = tf.data.Dataset.from_tensor_slices(
            np.asarray(labels, dtype=np.int32)
        )
        dataset = tf.data.Dataset.zip((images, label_ds))
    dataset = dataset.cache()
    if shuffle:
        # Full-size buffer: a true permutation per epoch, reproducible from the seed.
        dataset = dataset.shuffle(
            max(len(paths), 1), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size)
    if labels is None:
        dataset = dataset.map(
            lambda x: to_backbone_input(x, preprocess),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.map(
            lambda x, y: (to_backbone_input(x, preprocess), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
