from pathlib import Path

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


# ------------------------------------------------------- the fault-filtered GTZAN split
def _published(tmp_path, texts):
    """PublishedLists served from file:// URLs made here, with their own checksums, and
    targets under tmp_path: the fetch's own code path, without the internet."""
    import dataclasses
    import hashlib

    from genreflow.splits import FAULT_FILTERED_LISTS

    server = tmp_path / "server"
    server.mkdir()
    lists = []
    for split, text in texts.items():
        source = server / f"{split}_filtered.txt"
        source.write_text(text)
        lists.append(dataclasses.replace(
            FAULT_FILTERED_LISTS[split], url=source.as_uri(),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            target=str(tmp_path / "resources" / f"{split}_filtered.txt")))
    return lists


def test_fetch_split_lists_downloads_checks_and_keeps_verified_files(tmp_path):
    from genreflow.splits import fetch_published_lists

    lists = _published(tmp_path, {"train": "blues/blues.00001.wav\n", "valid": "jazz/jazz.00002.wav\n"})
    said = []
    fetch_published_lists(lists, log=said.append)
    assert [Path(p.target).read_text() for p in lists] == ["blues/blues.00001.wav\n", "jazz/jazz.00002.wav\n"]
    assert all("checksum verified" in line for line in said)
    # files already there with the right checksum are used as they are, not fetched again
    for published in lists:
        Path(published.url.removeprefix("file://")).unlink()
    fetch_published_lists(lists, log=said.append)
    assert said[-1].endswith("already there, checksum verified")


def test_a_download_with_another_checksum_is_refused_naming_both(tmp_path):
    import dataclasses

    from genreflow.splits import fetch_published_lists

    (published,) = _published(tmp_path, {"test": "rock/rock.00003.wav\n"})
    wrong = dataclasses.replace(published, sha256="0" * 64)
    with pytest.raises(ValueError) as error:
        fetch_published_lists([wrong], log=lambda m: None)
    assert "0" * 64 in str(error.value) and published.sha256 in str(error.value)
    assert not Path(wrong.target).exists()
    assert list(Path(wrong.target).parent.iterdir()) == []  # no half-written file either


def test_offline_the_error_names_every_url_and_target(tmp_path):
    import dataclasses

    from genreflow.splits import FAULT_FILTERED_LISTS, fetch_published_lists

    lists = [dataclasses.replace(published, url=f"http://127.0.0.1:9/{published.split}.txt",
                                 target=str(tmp_path / published.target))
             for published in FAULT_FILTERED_LISTS.values()]
    with pytest.raises(RuntimeError) as error:
        fetch_published_lists(lists, log=lambda m: None, timeout=5)
    message = str(error.value)
    for published in lists:
        assert published.url in message and f"put it at {published.target}" in message
        assert published.sha256 in message


def test_the_pinned_lists_are_the_published_commit():
    from genreflow.splits import FAULT_FILTERED_LISTS

    commit = "bdad579ea6cb37b665ea6019fe1026a6ce20cbc7"
    assert {split: p.url for split, p in FAULT_FILTERED_LISTS.items()} == {
        split: f"https://raw.githubusercontent.com/coreyker/dnn-mgr/{commit}/gtzan/{split}_filtered.txt"
        for split in ("train", "valid", "test")
    }
    assert FAULT_FILTERED_LISTS["train"].sha256.startswith("2b04966cef14")
    assert FAULT_FILTERED_LISTS["test"].target == "resources/splits/fault_filtered/test_filtered.txt"


def test_make_splits_refuses_a_list_that_is_not_the_published_one(tmp_path):
    from genreflow.splits import FAULT_FILTERED_LISTS

    clips_csv = tmp_path / "clips.csv"
    corpus(4).to_csv(clips_csv, index=False)
    rejected_csv = tmp_path / "rejected.csv"
    pd.DataFrame(columns=["path", "genre", "clip", "reason"]).to_csv(rejected_csv, index=False)
    lists = {}
    for split in ("train", "valid", "test"):
        lists[split] = str(tmp_path / f"{split}_filtered.txt")
        Path(lists[split]).write_text("blues/blues.00000.wav\n")
    checksums = {split: p.sha256 for split, p in FAULT_FILTERED_LISTS.items()}
    out = {s: str(tmp_path / f"out_{s}.csv") for s in ("train", "valid", "test")}
    with pytest.raises(ValueError) as error:
        make_splits(str(clips_csv), str(rejected_csv), {}, lists, out, str(tmp_path / "u.csv"),
                    log=lambda m: None, list_checksums=checksums)
    assert checksums["train"] in str(error.value) and "fetch_split_lists" in str(error.value)
    assert not Path(out["train"]).exists()


# ------------------------------------------------------- genres without enough clips
def _corpus_files(tmp_path, clips, rejected):
    clips_csv, rejected_csv = tmp_path / "clips.csv", tmp_path / "rejected.csv"
    clips.to_csv(clips_csv, index=False)
    pd.DataFrame(rejected, columns=["path", "genre", "clip", "reason"]).to_csv(rejected_csv, index=False)
    return str(clips_csv), str(rejected_csv)


def test_a_genre_without_usable_clips_stops_the_run_before_splitting(tmp_path):
    """Every rock clip rejected: not nine silent genres with a ten-class macro-F1, but an
    error naming rock, its counts and reasons, and how to go on."""
    clips = corpus(6)
    clips = clips[clips["genre"] != "rock"]
    rejected = [{"path": f"r{i}.wav", "genre": "rock", "clip": f"rock.0000{i}",
                 "reason": "not readable as audio: Format not recognised"} for i in range(6)]
    clips_csv, rejected_csv = _corpus_files(tmp_path, clips, rejected)
    out = {s: str(tmp_path / f"{s}.csv") for s in ("train", "valid", "test")}
    settings = {"seed": 42, "fractions": {"train": 0.7, "valid": 0.15, "test": 0.15}}
    with pytest.raises(ValueError) as error:
        make_splits(clips_csv, rejected_csv, settings, None, out, str(tmp_path / "u.csv"),
                    log=lambda m: None, genres=GENRES)
    message = str(error.value)
    assert "rock: 0 accepted clip(s) (6 rejected: 6 x not readable as audio: Format not recognised)" in message
    assert "remove them from dataset.genres" in message
    assert "jazz" not in message and "blues" not in message
    assert not Path(out["train"]).exists()


def test_split_lists_must_give_every_split_every_genre(tmp_path):
    clips = corpus(4)
    lists = {}
    for split, names in {"train": ["blues/blues.00000.wav", "rock/rock.00000.wav"],
                         "valid": ["blues/blues.00001.wav", "rock/rock.00001.wav"],
                         "test": ["blues/blues.00002.wav"]}.items():
        lists[split] = str(tmp_path / f"{split}.txt")
        Path(lists[split]).write_text("\n".join(names) + "\n")
    clips = clips[clips["genre"].isin(["blues", "rock"])]
    clips_csv, rejected_csv = _corpus_files(tmp_path, clips, [])
    out = {s: str(tmp_path / f"out_{s}.csv") for s in ("train", "valid", "test")}
    with pytest.raises(ValueError, match=r"rock: no clip in the test split"):
        make_splits(clips_csv, rejected_csv, {}, lists, out, str(tmp_path / "u.csv"),
                    log=lambda m: None, genres=["blues", "rock"])
