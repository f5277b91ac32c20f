"""The screening stage: embed every image once per (backbone, feature), train a head on
the cached embeddings, score it, summarise the 20 combinations, and select (on validation
only) which go on to tuning.

With `trainable_layers: 0` the backbone's output never changes during training, so
running the backbone once and training the head on its pooled output is the same model
(tests/test_models.py shows the predictions agree) at the cost of one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import write_csv, write_json
from genreflow.names import SPLITS
from genreflow.run_info import caveats
from genreflow.scoring import genre_labels, predictions_frame, score, split_rows
from genreflow.tables import caveat_banner


# One job's entry point: a parameter per input, param and output of its rule (embed_images),
# passed by name from the thin script.
def embed_index(
    backbone: str,
    image_size: int,
    weights_setting: str,
    weights_path: str | None,
    index_csv: str,
    genres: Sequence[str],
    out_npz: str,
    batch_size: int = 32,
    seed: int = 0,
    log=print,
) -> None:
    """Pooled backbone features of every image of a feature index, cached as .npz."""
    from genreflow.io import save_embeddings
    from genreflow.models.backbones import compute_embeddings, resolve_weights

    index = pd.read_csv(index_csv, dtype={"clip": str})
    labels = genre_labels(index["genre"], genres, index_csv)
    weights = resolve_weights(weights_setting, weights_path, backbone)
    log(
        f"embedding {len(index)} images with {backbone} "
        f"({'random init, seed ' + str(seed) if weights is None else weights.describe()})"
    )
    embeddings = compute_embeddings(
        backbone, image_size, weights, list(index["image"]), batch_size=batch_size,
        seed=seed,
    )
    save_embeddings(out_npz, embeddings, index["clip"], index["segment"], labels)
    log(f"wrote {embeddings.shape} embeddings to {out_npz}")


# One job's entry point: a parameter per input, param and output of its rule
# (train_screening), passed by name from the thin script.
def screen_head(
    embeddings_npz: str,
    manifests: Mapping[str, str],
    head: dict,
    training: Mapping,
    genres: Sequence[str],
    about: Mapping,
    out_metrics: str,
    out_history: str,
    out_predictions: str,
    out_folds: str,
    log=print,
) -> None:
    """Train the head on cached embeddings; write metrics, history, predictions and the
    per-fold scores (one row for the holdout protocol).

    `training["protocol"]`: `holdout` trains on the train split, stops on the validation
    split and scores both it and the test split (the study's). `kfold` (HEAR's protocol:
    frozen embeddings, a shallow head, track-level folds) pools the train and validation
    tracks, cuts `folds` folds (whole tracks, stratified by genre, seeded) and, for each
    fold, trains on the others but one, stops on that one and scores the held-out fold:
    every pooled track is scored once, and the validation scores (what selection reads)
    are the means over folds. The test split never enters the folds, unlike HEAR's, which
    pools every track because it tests nothing afterwards: here the selection feeds
    tuning and the test split is scored after it, so a fold that held test tracks would
    let them choose. The test columns score the fold heads' mean probabilities on the test
    split, which none of them saw.
    """
    from genreflow.io import load_embeddings

    cache = load_embeddings(embeddings_npz)
    rows = split_rows(cache.clip, manifests)
    if training.get("protocol", "holdout") == "kfold":
        plans = _kfold_plans(cache, rows, int(training["folds"]), training["seed"])
    else:
        plans = [{"train": rows["train"], "stop": rows["valid"], "valid": rows["valid"],
                  "test": rows["test"]}]
    results = [_screen_one(cache, plan, head, training, genres, about, i, log)
               for i, plan in enumerate(plans)]
    metrics = _combine_folds(results, about, head, training, len(plans), genres)
    write_csv(out_history, pd.concat([r["history"] for r in results], ignore_index=True))
    write_csv(out_predictions, _predictions_table(results, genres))
    write_csv(out_folds, pd.DataFrame([r["fold"] for r in results]))
    write_json(out_metrics, metrics)
    spread = "" if len(plans) == 1 else (f" (validation: mean of {len(plans)} folds of the "
                                         f"train and validation tracks; test: the {len(plans)} "
                                         "fold heads' mean probabilities)")
    log(f"valid macro-F1 {metrics['valid_macro_f1']:.3f}, test macro-F1 "
        f"{metrics['test_macro_f1']:.3f}{spread}")


def _kfold_plans(cache, rows: Mapping[str, np.ndarray], k: int, seed: int) -> list[dict]:
    """The rows of each fold: the train and validation tracks pooled and cut into k folds;
    fold i is scored (`valid`), fold i + 1 stops the head (`stop`), the rest train it.
    The test split is every fold's `test`, never part of a fold."""
    from genreflow.splits import track_folds

    pooled = np.sort(np.concatenate([rows["train"], rows["valid"]]))
    fold = track_folds(cache.clip[pooled], cache.label[pooled], k, seed)
    return [{"train": pooled[(fold != i) & (fold != (i + 1) % k)],
             "stop": pooled[fold == (i + 1) % k], "valid": pooled[fold == i],
             "test": rows["test"]}
            for i in range(k)]


def _screen_one(cache, rows, head, training, genres, about, fold: int, log) -> dict:
    """One head trained on rows["train"], stopped on rows["stop"], scored on rows["valid"]
    and rows["test"] (holdout: the validation split both stops and is scored)."""
    from genreflow.models.heads import build_head, feature_statistics
    from genreflow.models.train import Validation, predict_proba, train

    parts = ("train", "stop", "valid", "test")
    x = {part: cache.embeddings[rows[part]] for part in parts}
    y = {part: cache.label[rows[part]] for part in parts}
    kfold = training.get("protocol") == "kfold"
    log(f"{about['backbone']} + {about['feature']}"
        + (f", fold {fold + 1}" if kfold else "") + ": "
        + ", ".join(f"{part} {len(y[part])}" for part in (parts if kfold else SPLITS))
        + f" examples of {x['train'].shape[1]} features")
    model = build_head(x["train"].shape[1], head, n_classes=len(genres), seed=training["seed"],
                       stats=feature_statistics(x["train"]))
    fitted = train(model, (x["train"], y["train"]),
                   Validation(x["stop"], y["stop"], cache.clip[rows["stop"]], genres),
                   epochs=training["epochs"], patience=training["patience"],
                   batch_size=training["batch_size"], seed=training["seed"])
    scores, outputs = {}, {}
    for split in ("valid", "test"):
        probabilities = predict_proba(model, x[split])
        clips, segments = cache.clip[rows[split]], cache.segment[rows[split]]
        scores[split] = score(clips, y[split], probabilities, genres)
        outputs[split] = (clips, segments, y[split], probabilities)
    history = fitted.history
    history.insert(0, "fold", fold)
    return {
        "scores": scores, "outputs": outputs, "history": history, "epochs_run": len(history),
        "best_epoch": fitted.best_epoch,
        "fold": {"fold": fold, **{f"n_{part}": len(y[part]) for part in parts},
                 **{f"{split}_{metric}": scores[split]["tracks"][metric]
                    for split in ("valid", "test") for metric in ("macro_f1", "accuracy", "loss")},
                 "best_epoch": fitted.best_epoch},
    }


def _test_of_the_folds(results: Sequence[dict]):
    """(clips, segments, labels, probabilities) of the test split: the one head's, or the
    mean of the fold heads' probabilities (every fold scores the same test rows)."""
    clips, segments, labels, _ = results[0]["outputs"]["test"]
    for result in results[1:]:
        if not np.array_equal(result["outputs"]["test"][0], clips):
            raise ValueError("the folds scored different test rows")
    probabilities = np.mean([r["outputs"]["test"][3] for r in results], axis=0)
    return clips, segments, labels, probabilities


def _predictions_table(results: Sequence[dict], genres) -> pd.DataFrame:
    """predictions.csv: each fold's validation rows (its held-out fold under kfold), and
    the test rows the test columns score (under kfold the fold heads' mean, no fold)."""
    frames = []
    for result in results:
        frame = predictions_frame("valid", *result["outputs"]["valid"], genres)
        frame.insert(0, "fold", result["fold"]["fold"])
        frames.append(frame)
    test = predictions_frame("test", *_test_of_the_folds(results), genres)
    test.insert(0, "fold", results[0]["fold"]["fold"] if len(results) == 1 else None)
    frames.append(test)
    table = pd.concat(frames, ignore_index=True)
    table["fold"] = table["fold"].astype("Int64")
    return table


def _combine_folds(results: Sequence[dict], about, head, training, n_folds: int, genres) -> dict:
    """metrics.json: the holdout run's scores; for k folds, `valid_*` are the means (and
    sds) over the folds, as HEAR reports them, `valid` scores the pooled out-of-fold
    predictions (every train and validation track once), and `test`/`test_*` score the
    fold heads' mean probabilities on the test split (one model, so no sd)."""
    folds = pd.DataFrame([r["fold"] for r in results])
    metrics = {
        **about, "seed": training["seed"], "head": head,
        "protocol": training.get("protocol", "holdout"), "folds": n_folds,
        "epochs_run": int(sum(r["epochs_run"] for r in results)),
        "best_epoch": int(results[0]["best_epoch"]) if n_folds == 1 else None,
    }
    if n_folds == 1:
        metrics["valid"] = results[0]["scores"]["valid"]
    else:
        clips, _, labels, probabilities = (np.concatenate(parts) for parts in
                                           zip(*(r["outputs"]["valid"] for r in results)))
        metrics["valid"] = score(clips, labels, probabilities, genres)
    clips, _, labels, probabilities = _test_of_the_folds(results)
    metrics["test"] = score(clips, labels, probabilities, genres)
    for metric in ("macro_f1", "accuracy", "loss"):
        column = f"valid_{metric}"
        metrics[column] = float(folds[column].mean())
        metrics[column + "_std"] = float(folds[column].std(ddof=1)) if n_folds > 1 else None
        metrics[f"test_{metric}"] = float(metrics["test"]["tracks"][metric])
        metrics[f"test_{metric}_std"] = None
    return metrics


def summary_table(
    metrics_jsons: Sequence[str], predictions_csvs: Sequence[str], genres: Sequence[str],
    bootstrap,
) -> pd.DataFrame:
    """One row per (backbone, feature): validation and test scores, and the bootstrap
    interval of each test score (`genreflow.intervals`, over test tracks)."""
    from genreflow.intervals import score_intervals, tracks_of_test_split
    from genreflow.io import read_json

    columns = [
        "backbone", "feature", "weights", "pretrained", "protocol", "folds", "valid_macro_f1",
        "valid_macro_f1_std", "valid_accuracy", "valid_loss", "test_macro_f1",
        "test_macro_f1_std", "test_accuracy", "test_accuracy_std", "epochs_run", "seed",
    ]
    rows = []
    for metrics_json, predictions_csv in zip(metrics_jsons, predictions_csvs, strict=True):
        record = {"protocol": "holdout", "folds": 1, **read_json(metrics_json)}
        tracks = tracks_of_test_split(pd.read_csv(predictions_csv, dtype={"clip": str}), genres)
        intervals = score_intervals(tracks.labels, tracks.predicted, len(genres), bootstrap)
        row = {key: record.get(key) for key in columns}
        row["test_absent_genres"] = " ".join(tracks.absent(genres))
        for metric, interval in intervals.items():
            row[f"test_{metric}_low"], row[f"test_{metric}_high"] = interval.low, interval.high
            row[f"test_{metric}_na"] = interval.missing
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_tables(
    summary: pd.DataFrame, notes: Sequence[str], bootstrap, genres: Sequence[str],
    protocol: Mapping | None = None,
) -> str:
    """The study's Tables 1-4: one table per backbone, one row per image type, ordered by
    validation macro-F1 (which alone decides what goes on to tuning)."""
    from genreflow.intervals import absent_note, bracket, na_note

    lines = caveat_banner(notes)
    folds = int(summary["folds"].max())
    if protocol and protocol["requested"] != protocol["used"]:
        lines.append(
            f"Protocol: holdout on the given split lists (splits.lists); screening.protocol "
            f"{protocol['requested']} does not apply to a split fixed by lists, so no folds "
            "were used.\n"
        )
    if folds > 1:
        lines.append(
            f"Protocol: {folds}-fold cross-validation over the train and validation tracks "
            "(HEAR's protocol: frozen embeddings, a shallow head, track-level folds "
            "stratified by genre): each fold is scored once by a head trained on the others "
            "but one, which stops it; validation macro-F1 is mean ± sd over the "
            f"{folds} folds. The test split is in no fold (HEAR pools it too, because it "
            "tests nothing afterwards; here the test split is scored after the choice): "
            f"the test columns score the {folds} fold heads' mean probabilities on it.\n"
        )
    absent = [genre for genre in genres
              if any(genre in cell.split() for cell in summary["test_absent_genres"].fillna(""))]
    if absent:
        lines.append(absent_note(absent, genres))
    lines.append(
        "Rows are ordered by validation macro-F1, which alone chooses each backbone's image "
        "type; the test columns were not used to choose. Brackets: the "
        f"{bootstrap.describe()}.\n"
    )
    if note := na_note(summary.filter(regex="_na$").to_numpy().ravel()):
        lines.append(note)
    for backbone, group in summary.groupby("backbone", sort=True):
        lines.append(f"### {backbone}\n")
        lines.append("| feature | validation macro-F1 | test macro-F1 | test accuracy |")
        lines.append("|---|---:|---:|---:|")
        for row in group.sort_values("valid_macro_f1", ascending=False).itertuples():
            lines.append(
                f"| {row.feature} | {_mean_sd(row.valid_macro_f1, row.valid_macro_f1_std)} "
                f"| {_mean_sd(row.test_macro_f1, row.test_macro_f1_std)} "
                f"{bracket(row.test_macro_f1_low, row.test_macro_f1_high)} "
                f"| {_mean_sd(row.test_accuracy, row.test_accuracy_std)} "
                f"{bracket(row.test_accuracy_low, row.test_accuracy_high)} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _mean_sd(mean: float, sd) -> str:
    return f"{mean:.3f}" if sd is None or pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"


# One job's entry point: a parameter per input, param and output of its rule
# (summarize_screening), passed by name from the thin script.
def summarize_screening(
    metrics_jsons: Sequence[str],
    predictions_csvs: Sequence[str],
    about: Mapping,
    genres: Sequence[str],
    bootstrap: Mapping,
    min_f1: float | None,
    top_k: int | None,
    out_summary: str,
    out_tables: str,
    out_tables_html: str,
    out_heatmap: str,
    out_selection: str,
    log=print,
    protocol: Mapping | None = None,
) -> None:
    from genreflow.intervals import Bootstrap
    from genreflow.tables import write_summary

    bootstrap = Bootstrap.from_config(bootstrap)
    summary = summary_table(metrics_jsons, predictions_csvs, genres, bootstrap)
    summary = summary.sort_values(["backbone", "feature"])
    notes = caveats(about)
    selected = select_combinations(summary, min_f1=min_f1, top_k=top_k)
    write_summary(summary, markdown_tables(summary, notes, bootstrap, genres, protocol),
                  "Screening: Tables 1-4", notes, out_summary, out_tables, out_tables_html, log)
    from genreflow.plots.screening import plot_heatmap

    plot_heatmap(summary, selected, out_heatmap, notes)
    write_json(out_selection, {"rule": {"min_f1": min_f1, "top_k": top_k,
                                        "metric": "valid_macro_f1"},
                               "selected": selected, "caveats": notes})
    log("selected on validation macro-F1: "
        + ", ".join(f"{s['backbone']}+{s['feature']}" for s in selected))


def fetch_weights_or_explain(backbone: str, dest: str, log=print) -> None:
    """Download a backbone's ImageNet weights; without internet, say how to place them."""
    from genreflow.models.backbones import backbone_spec, fetch_weights

    spec = backbone_spec(backbone)
    log(f"downloading {spec.weights_url} to {dest}")
    try:
        fetch_weights(backbone, dest)
    except OSError as error:
        raise RuntimeError(
            f"could not download the ImageNet weights of {backbone} ({error}). This rule "
            "needs internet: run it where you have some (e.g. a login node: "
            f"`snakemake --cores 1 {dest}`), or download {spec.weights_url} "
            f"(md5 {spec.weights_md5}) by hand and put it at {dest}."
        ) from None
    log("done, md5 verified")


# ------------------------------------------------------------------------------ selection
# Which backbone/feature combinations go on from screening to tuning.
SELECTION_KEYS = ("backbone", "feature")


def _check_summary(summary: pd.DataFrame, metric: str) -> None:
    if metric.startswith("test"):
        # The test split must stay untouched until the final evaluation; choosing
        # combinations by it would leak it into model selection and bias the
        # reported test scores upwards.
        raise ValueError(
            f"selecting on {metric!r} would leak the test set; use a validation metric"
        )
    missing = [c for c in (*SELECTION_KEYS, metric) if c not in summary.columns]
    if missing:
        raise ValueError(f"screening summary lacks column(s) {missing}")
    duplicated = summary.duplicated(list(SELECTION_KEYS))
    if duplicated.any():
        pairs = summary.loc[duplicated, list(SELECTION_KEYS)].values.tolist()
        raise ValueError(
            f"screening summary has repeated backbone/feature rows: {pairs}"
        )


def best_feature_per_backbone(
    summary: pd.DataFrame, metric: str = "valid_macro_f1"
) -> pd.DataFrame:
    """One row per backbone: its feature with the highest `metric`.

    Ties go to the alphabetically first feature; runs without a score (NaN, e.g.
    failed) are ignored. Rows are ordered best first, ties by backbone name.
    """
    _check_summary(summary, metric)
    scored = summary.dropna(subset=[metric])
    ranked = scored.sort_values(
        [metric, "backbone", "feature"], ascending=[False, True, True], kind="mergesort"
    )
    best = ranked.drop_duplicates("backbone", keep="first")
    return best.reset_index(drop=True)


def select_combinations(
    summary: pd.DataFrame,
    min_f1: float | None = None,
    top_k: int | None = None,
    metric: str = "valid_macro_f1",
) -> list[dict]:
    """Best feature of each backbone, filtered by `min_f1` and/or capped at `top_k`.

    Selection uses validation scores only (see `_check_summary`); `test_macro_f1`
    in the summary is carried for reporting, never used here. With neither filter
    every backbone's best combination is kept. Returns
    [{"backbone", "feature", "valid_macro_f1"}...] best first (plus `metric` when
    it is another column).
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    best = best_feature_per_backbone(summary, metric)
    if min_f1 is not None:
        best = best[best[metric] >= min_f1]
    if top_k is not None:
        best = best.head(top_k)
    return [_selection_record(row, metric) for row in best.to_dict("records")]


def _selection_record(row: dict, metric: str) -> dict:
    record = {"backbone": row["backbone"], "feature": row["feature"]}
    for column in dict.fromkeys(("valid_macro_f1", metric)):
        value = row.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            record[column] = float(value)
    return record
