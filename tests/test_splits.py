import pandas as pd
import pytest

from genreflow.splits import make_splits, split_sizes, splits_from_lists, stratified_split

GENRES = ["blues", "jazz", "rock"]


def corpus(n_per_genre=20):
    return pd.DataFrame(
        [{"clip": f"{g}.{i:05d}", "genre": g} for g in GENRES for i in range(n_per_genre)]
    )


def test_stratified_split_sizes_disjoint_and_complete():
    parts = stratified_split(corpus(20), {"train": 0.7, "valid": 0.15, "test": 0.15}, seed=1)
    for genre in GENRES:
        counts = [int((parts[s].genre == genre).sum()) for s in ("train", "valid", "test")]
        assert counts == [14, 3, 3]
    clips = [set(parts[s]["clip"]) for s in ("train", "valid", "test")]
    assert not (clips[0] & clips[1] or clips[0] & clips[2] or clips[1] & clips[2])
    assert set().union(*clips) == set(corpus(20)["clip"])


def test_split_is_seeded():
    fractions = {"train": 0.7, "valid": 0.15, "test": 0.15}
    a = stratified_split(corpus(), fractions, seed=1)
    b = stratified_split(corpus().sample(frac=1, random_state=3), fractions, seed=1)
    c = stratified_split(corpus(), fractions, seed=2)
    assert all(a[s].equals(b[s]) for s in a)
    assert not a["test"].equals(c["test"])


def test_small_genres_still_get_every_split():
    assert split_sizes(3, {"train": 0.7, "valid": 0.15, "test": 0.15}) == (1, 1, 1)
    with pytest.raises(ValueError, match="cannot be split"):
        split_sizes(2, {"train": 0.7, "valid": 0.15, "test": 0.15})


def test_lists_report_missing_and_rejected(tmp_path):
    clips = corpus(4)
    rejected = pd.DataFrame([{"clip": "jazz.00054", "reason": "not readable as audio: x"}])
    lists = {}
    for split, names in {
        "train": ["blues/blues.00000.wav", "jazz/jazz.00054.wav", "# comment", ""],
        "valid": ["jazz/jazz.00001.wav", "rock/rock.09999.wav"],
        "test": ["rock/rock.00002.wav"],
    }.items():
        path = tmp_path / f"{split}.txt"
        path.write_text("\n".join(names) + "\n")
        lists[split] = str(path)
    parts, unmatched = splits_from_lists(clips, rejected, lists)
    assert list(parts["train"]["clip"]) == ["blues.00000"]
    assert list(parts["valid"]["clip"]) == ["jazz.00001"]
    assert unmatched.to_dict("records") == [
        {"split": "train", "clip": "jazz.00054", "reason": "rejected: not readable as audio: x"},
        {"split": "valid", "clip": "rock.09999", "reason": "not in the corpus"},
    ]


def test_clip_in_two_lists_is_an_error(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("blues/blues.00000.wav\n")
    lists = {s: str(tmp_path / f"{s}.txt") for s in ("train", "valid", "test")}
    with pytest.raises(ValueError, match="listed in both train"):
        splits_from_lists(corpus(2), pd.DataFrame(columns=["clip", "reason"]), lists)


def test_make_splits_is_byte_identical_across_reruns(tmp_path):
    clips_csv = tmp_path / "clips.csv"
    corpus(10).to_csv(clips_csv, index=False)
    rejected_csv = tmp_path / "rejected.csv"
    pd.DataFrame(columns=["path", "genre", "clip", "reason"]).to_csv(rejected_csv, index=False)
    settings = {"seed": 42, "fractions": {"train": 0.7, "valid": 0.15, "test": 0.15}}
    outputs = []
    for run in range(2):
        out = {s: str(tmp_path / f"{run}_{s}.csv") for s in ("train", "valid", "test")}
        make_splits(str(clips_csv), str(rejected_csv), settings, None, out, str(tmp_path / "u.csv"), log=lambda m: None)
        outputs.append([open(out[s], "rb").read() for s in ("train", "valid", "test")])
    assert outputs[0] == outputs[1]
