"""The screening stage: embed every image once per (backbone, feature), train a head on
the cached embeddings, score it, and summarise the 20 combinations.

With `trainable_layers: 0` the backbone's output never changes during training, so
running the backbone once and training the head on its pooled output is the same model
(tests/test_models.py shows the predictions agree) at the cost of one forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genreflow.io import write_csv, write_json

SPLITS = ("train", "valid", "test")


def limit_threads(threads: int) -> None:
    """Keep TensorFlow within the cores Snakemake gave the job."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(max(1, int(threads) // 2))


def weights_label(setting: str) -> str:
    return setting if setting in ("imagenet", "none") else f"file:{os.path.basename(setting)}"


def embed_index(
    backbone: str,
    image_size: int,
    weights_path: str | None,
    index_csv: str,
    genres: Sequence[str],
    out_npz: str,
    batch_size: int = 32,
    seed: int = 0,
    log=print,
) -> None:
    """Pooled backbone features of every image of a feature index, cached as .npz."""
    from genreflow.models import compute_embeddings, save_embeddings

    index = pd.read_csv(index_csv)
    labels = index["genre"].map({genre: i for i, genre in enumerate(genres)})
    if labels.isna().any():
        unknown = sorted(set(index["genre"][labels.isna()]))
        raise ValueError(f"{index_csv}: genres {unknown} are not in dataset.genres")
    log(
        f"embedding {len(index)} images with {backbone} "
        f"({'random init' if weights_path is None else weights_path})"
    )
    embeddings = compute_embeddings(
        backbone, image_size, weights_path, list(index["image"]), batch_size=batch_size,
        seed=seed,
    )
    save_embeddings(out_npz, embeddings, index["clip"], index["segment"], labels.astype(int))
    log(f"wrote {embeddings.shape} embeddings to {out_npz}")


def split_rows(clips: np.ndarray, manifests: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Row indices of each split in a cache (or index), by the manifest's clips."""
    rows = {}
    for split in SPLITS:
        members = set(pd.read_csv(manifests[split])["clip"])
        rows[split] = np.flatnonzero(np.isin(clips, list(members)))
        if rows[split].size == 0:
            raise ValueError(f"no examples of split {split!r} ({manifests[split]}) in the cache")
    return rows


def track_probabilities(clips: np.ndarray, probabilities: np.ndarray):
    """Average the class probabilities of each track's segments: (tracks, mean probs)."""
    frame = pd.DataFrame(probabilities)
    frame.insert(0, "clip", clips)
    means = frame.groupby("clip", sort=True).mean()
    return means.index.to_numpy(), means.to_numpy()


def score(
    clips: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, genres: Sequence[str]
) -> dict:
    """Metrics of the examples, and of whole tracks when a track has several segments."""
    from genreflow.metrics import classification_metrics

    result = {"examples": classification_metrics(labels, probabilities.argmax(1), genres)}
    if len(np.unique(clips)) < len(clips):
        tracks, track_probs = track_probabilities(clips, probabilities)
        track_labels = pd.Series(labels, index=clips).groupby(level=0).first()
        result["tracks"] = classification_metrics(
            track_labels.loc[tracks].to_numpy(), track_probs.argmax(1), genres
        )
    else:
        result["tracks"] = result["examples"]
    return result


def predictions_frame(split, clips, segments, labels, probabilities, genres) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "split": split,
            "clip": clips,
            "segment": segments,
            "true": [genres[i] for i in labels],
            "predicted": [genres[i] for i in probabilities.argmax(1)],
        }
    )
    for i, genre in enumerate(genres):
        frame[f"p_{genre}"] = np.round(probabilities[:, i], 6)
    return frame


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
    log=print,
) -> None:
    """Train the head on cached embeddings; write metrics, history and predictions."""
    from genreflow.models import (
        build_head,
        feature_statistics,
        load_embeddings,
        predict_proba,
        train,
    )

    cache = load_embeddings(embeddings_npz)
    rows = split_rows(cache.clip, manifests)
    x = {split: cache.embeddings[rows[split]] for split in SPLITS}
    y = {split: cache.label[rows[split]] for split in SPLITS}
    log(
        f"{about['backbone']} + {about['feature']}: "
        + ", ".join(f"{split} {len(y[split])}" for split in SPLITS)
        + f" examples of {x['train'].shape[1]} features"
    )
    model = build_head(
        x["train"].shape[1],
        head,
        n_classes=len(genres),
        seed=training["seed"],
        stats=feature_statistics(x["train"]),
    )
    history = train(
        model,
        (x["train"], y["train"]),
        (x["valid"], y["valid"]),
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        patience=training["patience"],
        seed=training["seed"],
        log=None,
    )
    predictions, metrics = [], {}
    for split in ("valid", "test"):
        probabilities = predict_proba(model, x[split])
        clips, segments = cache.clip[rows[split]], cache.segment[rows[split]]
        metrics[split] = score(clips, y[split], probabilities, genres)
        predictions.append(
            predictions_frame(split, clips, segments, y[split], probabilities, genres)
        )
    write_csv(out_history, history)
    write_csv(out_predictions, pd.concat(predictions, ignore_index=True))
    write_json(
        out_metrics,
        {
            **about,
            "seed": training["seed"],
            "epochs_run": int(len(history)),
            "best_epoch": int(history["val_loss"].idxmin()) + 1,
            "head": head,
            "valid_macro_f1": metrics["valid"]["tracks"]["macro_f1"],
            "valid_accuracy": metrics["valid"]["tracks"]["accuracy"],
            "test_macro_f1": metrics["test"]["tracks"]["macro_f1"],
            "test_accuracy": metrics["test"]["tracks"]["accuracy"],
            "valid": metrics["valid"],
            "test": metrics["test"],
        },
    )
    log(
        f"valid macro-F1 {metrics['valid']['tracks']['macro_f1']:.3f}, "
        f"test macro-F1 {metrics['test']['tracks']['macro_f1']:.3f} "
        f"after {len(history)} epochs"
    )


def backbone_about(run_about: Mapping, backbone: str) -> dict:
    """The run's `about` as it applies to one backbone: an audio backbone (musicnn) is
    pretrained on music whatever backbones.weights says about the image backbones."""
    from genreflow.audio_embeddings import MUSICNN_MODELS

    about = dict(run_about)
    if backbone in MUSICNN_MODELS:
        about["weights"] = f"musicnn 0.1.0 {MUSICNN_MODELS[backbone]}"
        about["pretrained"] = True
    return about


def caveats(about: Mapping) -> list[str]:
    """Warnings a reader of any table or figure must see first."""
    notes = []
    if not about.get("pretrained", True):
        notes.append(
            "IMAGE BACKBONES NOT PRETRAINED: backbones.weights is 'none' (random "
            "initialisation); their scores say nothing about transfer learning from ImageNet "
            "(musicnn backbones are pretrained on music either way)."
        )
    if about.get("corpus") == "synthetic":
        notes.append(
            "SYNTHETIC DEMO CORPUS: these are not GTZAN results; read them against the "
            "demo corpus's separability in BENCHMARKS.md."
        )
    return notes


def summary_table(metrics_jsons: Sequence[str]) -> pd.DataFrame:
    from genreflow.io import read_json

    records = [read_json(path) for path in metrics_jsons]
    columns = [
        "backbone", "feature", "weights", "pretrained", "valid_macro_f1", "valid_accuracy",
        "test_macro_f1", "test_accuracy", "epochs_run", "seed",
    ]
    return pd.DataFrame([{key: record[key] for key in columns} for record in records])


def markdown_tables(summary: pd.DataFrame, notes: Sequence[str]) -> str:
    """The study's Tables 1-4: one table per backbone, feature and F1, best first."""
    lines = [f"> **{note}**\n" for note in notes]
    for backbone, group in summary.groupby("backbone", sort=True):
        lines.append(f"### {backbone}\n")
        lines.append("| feature | validation macro-F1 | test macro-F1 | test accuracy |")
        lines.append("|---|---:|---:|---:|")
        for row in group.sort_values("valid_macro_f1", ascending=False).itertuples():
            lines.append(
                f"| {row.feature} | {row.valid_macro_f1:.3f} | {row.test_macro_f1:.3f} "
                f"| {row.test_accuracy:.3f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_heatmap(summary: pd.DataFrame, out_png: str, notes: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genreflow.audio_embeddings import AUDIO_FEATURE
    from genreflow.features import FEATURES

    grid = summary.pivot(index="backbone", columns="feature", values="test_macro_f1")
    grid = grid[[feature for feature in (*FEATURES, AUDIO_FEATURE) if feature in grid.columns]]
    fig, ax = plt.subplots(figsize=(1.4 * grid.shape[1] + 2.5, 0.7 * grid.shape[0] + 2.2))
    # Audio backbones have no image types and image backbones no audio: blank, not 0.
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(grid.to_numpy(dtype=float)), cmap=cmap,
                      vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                    color="white" if value < 0.6 else "black", fontsize=10)
        else:
            ax.text(j, i, "n/a", ha="center", va="center", color="#999999", fontsize=8)
    ax.set_xlabel("image type (audio: musicnn embeds the audio itself)"
                  if AUDIO_FEATURE in grid.columns else "image type")
    ax.set_ylabel("backbone")
    title = "Screening: test macro-F1 (frozen backbone, head only)"
    if notes:
        title += "\n" + "\n".join(note.split(":")[0] for note in notes)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="macro-F1")
    fig.tight_layout()
    from genreflow.io import write_bytes_atomic
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(out_png, buffer.getvalue())


def summarize_screening(
    metrics_jsons: Sequence[str],
    about: Mapping,
    min_f1: float | None,
    top_k: int | None,
    out_summary: str,
    out_tables: str,
    out_heatmap: str,
    out_selection: str,
    log=print,
) -> None:
    from genreflow.io import write_text_atomic
    from genreflow.selection import select_combinations

    summary = summary_table(metrics_jsons).sort_values(["backbone", "feature"])
    notes = caveats(about)
    for note in notes:
        log("WARNING: " + note)
    write_csv(out_summary, summary)
    write_text_atomic(out_tables, markdown_tables(summary, notes))
    plot_heatmap(summary, out_heatmap, notes)
    selected = select_combinations(summary, min_f1=min_f1, top_k=top_k)
    write_json(out_selection, {"rule": {"min_f1": min_f1, "top_k": top_k,
                                        "metric": "valid_macro_f1"},
                               "selected": selected, "caveats": notes})
    log("selected: " + ", ".join(f"{s['backbone']}+{s['feature']}" for s in selected))


def fetch_weights_or_explain(backbone: str, dest: str, log=print) -> None:
    """Download a backbone's ImageNet weights; without internet, say how to place them."""
    from genreflow.models import backbone_spec, fetch_weights

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
