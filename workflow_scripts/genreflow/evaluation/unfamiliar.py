"""The "unfamiliar" score of a final model (`fit_unfamiliarity`, its rule):
its statistics fitted on the training split, its threshold on the validation split, and
every validation and test track's score (`genreflow.models.unfamiliar` says what the score
is and what a flag means).

It is fitted for the seed whose model is exported (`genreflow.evaluation.seeds.choose_seed`),
on that seed's model.keras itself: the representations come from the saved network, run on
the training pipeline's inputs (the split's images, or an audio backbone's embeddings), so
that a bundle scores a user's file with the very network its statistics describe. The job
checks that this network gives the probabilities the final model's job wrote for the same
test examples before it fits anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import read_json, write_csv, write_json
from genreflow.names import SPLITS, is_audio_backbone

# model.keras must give the final model's test probabilities to this (as
# genreflow.models.assemble checks the assembled network; float16 activation storage of a
# fine-tuned tail may move them a little more than float noise)
PROBABILITY_TOLERANCE = 0.02


def split_inputs_of(backbone: str, model, manifests: Mapping[str, str], genres: Sequence[str],
                    index_csv: str | None, embeddings_npz: str | None) -> dict:
    """Per split, (the saved model's inputs, clips, labels): the images of the feature index
    through the training pipeline (`genreflow.models.data.split_dataset`), or an audio
    backbone's cached embeddings."""
    if is_audio_backbone(backbone):
        from genreflow.io import load_embeddings
        from genreflow.scoring import split_rows

        cache = load_embeddings(embeddings_npz)
        rows = split_rows(cache.clip, manifests)
        return {split: (cache.embeddings[rows[split]], cache.clip[rows[split]],
                        cache.label[rows[split]]) for split in SPLITS}
    from genreflow.models.data import split_dataset, split_examples

    examples = split_examples(index_csv, manifests, genres)
    image_size = int(model.input_shape[1])
    return {split: (split_dataset(frame, backbone, image_size, 32, False, 0),
                    frame["clip"].to_numpy(), frame["label"].to_numpy())
            for split, frame in examples.items()}


def check_reproduces(probabilities: np.ndarray, clips: np.ndarray, predictions: pd.DataFrame,
                     genres: Sequence[str], what: str, log=print) -> float:
    """The saved network's test probabilities against the final model job's (in the
    examples' order); stops the job when they differ beyond `PROBABILITY_TOLERANCE`."""
    test = predictions[predictions["split"] == "test"]
    written = test[[f"p_{genre}" for genre in genres]].to_numpy(dtype=np.float64)
    if len(written) != len(probabilities) or list(test["clip"].astype(str)) != [str(c) for c in clips]:
        raise RuntimeError(f"{what}: the test examples of the predictions ({len(written)}) are "
                           f"not those of the model's inputs ({len(probabilities)})")
    gap = float(np.max(np.abs(written - probabilities))) if len(written) else 0.0
    if gap > PROBABILITY_TOLERANCE:
        raise RuntimeError(f"{what} predicts test probabilities up to {gap:.3f} away from those "
                           "its final model's job wrote: it is not the model that was tested")
    log(f"{what} reproduces the final model's {len(written)} test probabilities to {gap:.1e}")
    return gap


# One job's entry point: a parameter per input, param and output of its rule
# (fit_unfamiliarity), passed by name from the thin script. Most of its length is the
# summary record, a key per line.
def fit_unfamiliarity(
    metrics_jsons: Sequence[str],
    model_kerases: Sequence[str],
    predictions_csvs: Sequence[str],
    manifests: Mapping[str, str],
    index_csv: str | None,
    embeddings_npz: str | None,
    genres: Sequence[str],
    rate: float,
    out_stats: str,
    out_scores: str,
    out_summary: str,
    log=print,
) -> None:
    """Fit the score of the exported seed's model: statistics on its training examples'
    representations, threshold at the (1 - rate) quantile of its validation tracks' scores;
    write the statistics (.npz), each validation and test track's score (.csv) and a summary
    (.json: the seed, the representation, the threshold, the flagged share of each split)."""
    import keras

    import genreflow.models.backbones  # noqa: F401 (registers InferenceMode for loading)
    from genreflow.evaluation.seeds import choose_seed
    from genreflow.models import unfamiliar

    chosen = choose_seed(metrics_jsons)
    metrics = read_json(metrics_jsons[chosen])
    backbone, seed = metrics["backbone"], int(metrics["seed"])
    model = keras.saving.load_model(model_kerases[chosen], compile=False)
    what = f"{model_kerases[chosen]} (seed {seed}, chosen on validation)"
    representation = unfamiliar.representation_name(model)
    log(f"{what}: the score measures {representation}")
    represent = unfamiliar.Representations(model)
    computed = {}
    for split, (inputs, clips, labels) in split_inputs_of(
            backbone, model, manifests, genres, index_csv, embeddings_npz).items():
        probabilities, features = represent(inputs)
        computed[split] = (probabilities, features, np.asarray(clips).astype(str), np.asarray(labels))
    predictions = pd.read_csv(predictions_csvs[chosen], dtype={"clip": str})
    check_reproduces(computed["test"][0], computed["test"][2], predictions, genres, what, log)
    train = computed["train"]
    stats = unfamiliar.fit_statistics(train[1], train[3])
    tracks = {}
    for split in ("valid", "test"):
        probabilities, features, clips, labels = computed[split]
        names, scores = stats.track_scores(features, clips)
        tracks[split] = _track_rows(split, names, scores, probabilities, clips, labels, genres)
    stats = unfamiliar.with_threshold(stats, tracks["valid"]["score"].to_numpy(), rate)
    rows = pd.concat(tracks.values(), ignore_index=True)
    rows["unfamiliarity"] = rows["score"] / stats.threshold
    rows["unfamiliar"] = stats.flagged(rows["score"].to_numpy())
    stats.save(out_stats)
    write_csv(out_scores, rows)
    summary = {
        "backbone": backbone, "feature": metrics["feature"], "round": metrics["round"],
        "seed": seed,
        **unfamiliar.describe(stats, representation),
        "shrinkage": stats.shrinkage,
        "n_train_examples": int(len(train[3])),
        "fitted_on": {"statistics": "train", "threshold": "valid"},
        **{split: _flag_summary(rows[rows["split"] == split]) for split in ("valid", "test")},
    }
    few = few_tracks_note(summary["valid"]["n_tracks"], rate)
    if few:
        summary["note"] = few
        log("WARNING: " + few)
    write_json(out_summary, summary)
    for split in ("valid", "test"):
        part = summary[split]
        log(f"{split}: {part['flagged']} of {part['n_tracks']} tracks flagged unfamiliar "
            f"(threshold {stats.threshold:.3f}: the {1 - rate:.0%} quantile of the validation "
            "tracks' scores)")


def few_tracks_note(n_valid: int, rate: float) -> str | None:
    """What a threshold fitted on fewer than 1 / rate validation tracks cannot promise."""
    if n_valid * rate >= 1.0:
        return None
    return (f"the threshold is the {1 - rate:.0%} quantile of only {n_valid} validation tracks' "
            f"scores, which is about their largest: with fewer than {int(np.ceil(1 / rate))} "
            f"tracks the share of in-distribution songs flagged can be far from {rate:.0%}")


def _track_rows(split: str, names: np.ndarray, scores: np.ndarray, probabilities: np.ndarray,
                clips: np.ndarray, labels: np.ndarray, genres: Sequence[str]) -> pd.DataFrame:
    """One row per track: its score, true genre and predicted genre (the mean of its
    examples' probabilities, as the evaluation's track scores)."""
    from genreflow.scoring import track_labels, track_probabilities

    tracks, track_p = track_probabilities(clips, probabilities)
    if list(tracks) != list(names):
        raise RuntimeError("track order of scores and probabilities differ")
    truth = track_labels(clips, labels, tracks)
    return pd.DataFrame({"split": split, "clip": names, "score": scores,
                         "true": [genres[i] for i in truth],
                         "predicted": [genres[i] for i in track_p.argmax(axis=1)]})


def _flag_summary(rows: pd.DataFrame) -> dict:
    flagged = rows["unfamiliar"].to_numpy(dtype=bool)
    right = (rows["true"] == rows["predicted"]).to_numpy()
    return {
        "n_tracks": int(len(rows)),
        "flagged": int(flagged.sum()),
        "flagged_share": float(flagged.mean()) if len(rows) else float("nan"),
        "accuracy_flagged": float(right[flagged].mean()) if flagged.any() else None,
        "accuracy_unflagged": float(right[~flagged].mean()) if (~flagged).any() else None,
    }
