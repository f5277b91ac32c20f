"""The screening stage: embed every image once per (backbone, feature), train a head on
the cached embeddings, score it, and summarise the 20 combinations.

With `trainable_layers: 0` the backbone's output never changes during training, so
running the backbone once and training the head on its pooled output is the same model
(tests/test_models.py shows the predictions agree) at the cost of one forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import write_csv, write_json
from genreflow.run_info import caveats
from genreflow.scoring import SPLITS, genre_labels, predictions_frame, score, split_rows

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
    split and scores the test split (the study's). `kfold` (HEAR's GTZAN protocol: frozen
    embeddings, a shallow head, track-level folds) pools every track, cuts `folds` folds
    (whole tracks, stratified by genre, seeded) and, for each fold, trains on the others but
    one, stops on that one (`valid`) and scores the held-out fold (`test`); every track is
    tested once, and the scores are the means over folds.
    """
    from genreflow.io import load_embeddings

    cache = load_embeddings(embeddings_npz)
    if training.get("protocol", "holdout") == "kfold":
        from genreflow.folds import track_folds

        rows = split_rows(cache.clip, manifests)
        pooled = np.sort(np.concatenate([rows[split] for split in SPLITS]))
        k = int(training["folds"])
        fold = track_folds(cache.clip[pooled], cache.label[pooled], k, training["seed"])
        plans = [{"train": pooled[(fold != i) & (fold != (i + 1) % k)],
                  "valid": pooled[fold == (i + 1) % k], "test": pooled[fold == i]}
                 for i in range(k)]
    else:
        plans = [split_rows(cache.clip, manifests)]
    results = [_screen_one(cache, plan, head, training, genres, about, i, log)
               for i, plan in enumerate(plans)]
    metrics = _combine_folds(results, about, head, training, len(plans), genres)
    write_csv(out_history, pd.concat([r["history"] for r in results], ignore_index=True))
    write_csv(out_predictions, pd.concat([r["predictions"] for r in results], ignore_index=True))
    write_csv(out_folds, pd.DataFrame([r["fold"] for r in results]))
    write_json(out_metrics, metrics)
    spread = "" if len(plans) == 1 else f" (mean of {len(plans)} folds)"
    log(f"valid macro-F1 {metrics['valid_macro_f1']:.3f}, test macro-F1 "
        f"{metrics['test_macro_f1']:.3f}{spread}")


def _screen_one(cache, rows, head, training, genres, about, fold: int, log) -> dict:
    """One head trained on rows["train"], stopped on rows["valid"], scored on both and on
    rows["test"]."""
    from genreflow.models.heads import build_head, feature_statistics
    from genreflow.models.train import Validation, predict_proba, train

    x = {split: cache.embeddings[rows[split]] for split in SPLITS}
    y = {split: cache.label[rows[split]] for split in SPLITS}
    log(f"{about['backbone']} + {about['feature']}"
        + (f", fold {fold + 1}" if training.get("protocol") == "kfold" else "") + ": "
        + ", ".join(f"{split} {len(y[split])}" for split in SPLITS)
        + f" examples of {x['train'].shape[1]} features")
    model = build_head(x["train"].shape[1], head, n_classes=len(genres), seed=training["seed"],
                       stats=feature_statistics(x["train"]))
    fitted = train(model, (x["train"], y["train"]),
                   Validation(x["valid"], y["valid"], cache.clip[rows["valid"]], genres),
                   epochs=training["epochs"], patience=training["patience"],
                   batch_size=training["batch_size"], seed=training["seed"])
    scores, predictions, outputs = {}, [], {}
    for split in ("valid", "test"):
        probabilities = predict_proba(model, x[split])
        clips, segments = cache.clip[rows[split]], cache.segment[rows[split]]
        scores[split] = score(clips, y[split], probabilities, genres)
        outputs[split] = (clips, y[split], probabilities)
        frame = predictions_frame(split, clips, segments, y[split], probabilities, genres)
        frame.insert(0, "fold", fold)
        predictions.append(frame)
    history = fitted.history
    history.insert(0, "fold", fold)
    return {
        "scores": scores, "outputs": outputs, "history": history, "epochs_run": len(history),
        "best_epoch": fitted.best_epoch, "predictions": pd.concat(predictions, ignore_index=True),
        "fold": {"fold": fold, **{f"n_{split}": len(y[split]) for split in SPLITS},
                 **{f"{split}_{metric}": scores[split]["tracks"][metric]
                    for split in ("valid", "test") for metric in ("macro_f1", "accuracy", "loss")},
                 "best_epoch": fitted.best_epoch},
    }


def _combine_folds(results: Sequence[dict], about, head, training, n_folds: int, genres) -> dict:
    """metrics.json: the holdout run's scores; for k folds, `valid_*`/`test_*` are the means
    (and sds) over the folds, as HEAR reports them, and `valid`/`test` score the pooled
    out-of-fold predictions (every track once), which the tables' intervals resample."""
    folds = pd.DataFrame([r["fold"] for r in results])
    metrics = {
        **about, "seed": training["seed"], "head": head,
        "protocol": training.get("protocol", "holdout"), "folds": n_folds,
        "epochs_run": int(sum(r["epochs_run"] for r in results)),
        "best_epoch": int(results[0]["best_epoch"]) if n_folds == 1 else None,
    }
    for split in ("valid", "test"):
        for metric in ("macro_f1", "accuracy", "loss"):
            column = f"{split}_{metric}"
            metrics[column] = float(folds[column].mean())
            metrics[column + "_std"] = float(folds[column].std(ddof=1)) if n_folds > 1 else None
    for split in ("valid", "test"):
        if n_folds == 1:
            metrics[split] = results[0]["scores"][split]
        else:
            clips, labels, probabilities = (np.concatenate(parts) for parts in
                                            zip(*(r["outputs"][split] for r in results)))
            metrics[split] = score(clips, labels, probabilities, genres)
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
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_tables(
    summary: pd.DataFrame, notes: Sequence[str], bootstrap, genres: Sequence[str],
    protocol: Mapping | None = None,
) -> str:
    """The study's Tables 1-4: one table per backbone, one row per image type, ordered by
    validation macro-F1 (which alone decides what goes on to tuning)."""
    from genreflow.intervals import absent_note, bracket

    lines = [f"> **{note}**\n" for note in notes]
    folds = int(summary["folds"].max())
    if protocol and protocol["requested"] != protocol["used"]:
        lines.append(
            f"Protocol: holdout on the given split lists (splits.lists); screening.protocol "
            f"{protocol['requested']} does not apply to a split fixed by lists, so no folds "
            "were used.\n"
        )
    if folds > 1:
        lines.append(
            f"Protocol: {folds}-fold cross-validation over all tracks (HEAR's GTZAN protocol: "
            "frozen embeddings, a shallow head, track-level folds stratified by genre): each "
            "fold is tested once by a head trained on the others but one, which stops it. "
            f"Scores are mean ± sd over the {folds} folds; brackets are the interval of the "
            "pooled out-of-fold score (every track tested once).\n"
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


def plot_heatmap(
    summary: pd.DataFrame, selected: Sequence[Mapping], out_png: str, notes: Sequence[str]
) -> None:
    """Backbones x image types coloured by validation macro-F1 (what chooses), each cell
    with its test macro-F1 below; the chosen image type of each backbone is framed."""
    from matplotlib.patches import Rectangle

    from genreflow.features import FEATURES
    from genreflow.plots.style import house_style, new_figure, save_figure
    from genreflow.run_info import AUDIO_FEATURE

    order = [feature for feature in (*FEATURES, AUDIO_FEATURE) if feature in set(summary["feature"])]
    valid = summary.pivot(index="backbone", columns="feature", values="valid_macro_f1")[order]
    test = summary.pivot(index="backbone", columns="feature", values="test_macro_f1")[order]
    chosen = {(s["backbone"], s["feature"]) for s in selected}
    import matplotlib

    with house_style():
        fig = new_figure((1.5 * len(order) + 3.2, 0.75 * len(valid) + 2.6))
        ax = fig.add_subplot()
        ax.grid(False)
        # Audio backbones have no image types and image backbones no audio: blank, not 0.
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
        image = ax.imshow(np.ma.masked_invalid(valid.to_numpy(dtype=float)), cmap=cmap,
                          vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(order)), order)
        ax.set_yticks(range(len(valid)), valid.index)
        for (i, j), value in np.ndenumerate(valid.to_numpy(dtype=float)):
            if not np.isfinite(value):
                ax.text(j, i, "n/a", ha="center", va="center", color="#999999", fontsize=8)
                continue
            color = "white" if value < 0.6 else "black"
            ax.text(j, i - 0.12, f"{value:.2f}", ha="center", va="center", color=color,
                    fontsize=10.5, fontweight="bold")
            ax.text(j, i + 0.22, f"test {test.iloc[i, j]:.2f}", ha="center", va="center",
                    color=color, fontsize=8)
            if (valid.index[i], order[j]) in chosen:
                ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False,
                                       edgecolor="#E24A33", linewidth=2.5))
        ax.set_xlabel("image type (audio: musicnn embeds the audio itself)"
                      if AUDIO_FEATURE in order else "image type")
        ax.set_ylabel("backbone")
        ax.set_title("Screening: validation macro-F1 (frozen backbone, head only)\n"
                     "framed: each backbone's image type chosen on validation")
        fig.colorbar(image, ax=ax, label="validation macro-F1")
        save_figure(fig, out_png, notes)


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
    out_heatmap: str,
    out_selection: str,
    log=print,
    protocol: Mapping | None = None,
) -> None:
    from genreflow.intervals import Bootstrap
    from genreflow.io import write_text_atomic
    from genreflow.selection import select_combinations

    bootstrap = Bootstrap.from_config(bootstrap)
    summary = summary_table(metrics_jsons, predictions_csvs, genres, bootstrap)
    summary = summary.sort_values(["backbone", "feature"])
    notes = caveats(about)
    for note in notes:
        log("WARNING: " + note)
    selected = select_combinations(summary, min_f1=min_f1, top_k=top_k)
    write_csv(out_summary, summary)
    write_text_atomic(out_tables, markdown_tables(summary, notes, bootstrap, genres, protocol))
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
