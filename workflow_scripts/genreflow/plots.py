"""Every figure of the final evaluation and of the tuning rounds, as PNGs for the report.

All figures share one look: Optuna's matplotlib plots force the "ggplot" style sheet,
so the others use it too, with the same font sizes. Sizes are fixed (inches x DPI, no
tight bounding box), so a figure's pixel size does not depend on its content. When a run
is not pretrained or uses the synthetic demo corpus, every figure says so in red at its
top, in the words of `genreflow.run_info.caveats`. PNGs are written atomically.

Only matplotlib, pandas and (for the tuning plots) Optuna are imported: plotting jobs
start fast and never load TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
import warnings
from collections.abc import Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genreflow.io import read_json, write_bytes_atomic  # noqa: E402

DPI = 120
CURVE_SIZE = (7.5, 4.8)
CONFUSION_SIZE = (8.4, 7.4)
TUNING_SIZE = (9.0, 5.4)
CAVEAT_COLOR = "#b00020"
TRAIN_COLOR = "#348ABD"
VALID_COLOR = "#E24A33"
STYLE = {
    "font.size": 10.0,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.0,
    "figure.titlesize": 9.5,
    "axes.labelcolor": "#333333",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """The ggplot sheet plus readable sizes; rcParams are restored afterwards, also the
    global `plt.style.use("ggplot")` that Optuna's plot functions run."""
    with plt.style.context("ggplot"), matplotlib.rc_context(STYLE):
        yield


def caveat_lines(notes: Sequence[str], width: int = 100) -> list[str]:
    """One short line per caveat: its upper-case heading and its first clause (cut to
    `width` characters, so that the banner fits the narrowest figure)."""
    lines = []
    for note in notes:
        heading, _, rest = note.partition(":")
        detail = rest.split(";")[0].strip()
        line = f"{heading}: {detail}" if detail else heading
        lines.append(textwrap.shorten(line, width, placeholder=" ..."))
    return lines


def _new_figure(size: tuple[float, float]):
    return plt.figure(figsize=size, dpi=DPI, layout="constrained")


def _save(fig, out_png: str | os.PathLike, notes: Sequence[str]) -> None:
    """Add the caveat banner, render at the fixed size and write the PNG atomically."""
    lines = caveat_lines(notes)
    if lines:
        fig.suptitle(
            "\n".join(lines), color=CAVEAT_COLOR, fontweight="bold",
            fontsize=STYLE["figure.titlesize"],
        )
    buffer = io.BytesIO()
    # No "Software" stamp, so equal figures give equal bytes across matplotlib versions.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(out_png, buffer.getvalue())


def placeholder_figure(
    message: str, out_png: str, title: str, notes: Sequence[str] = (),
    size: tuple[float, float] = TUNING_SIZE,
) -> None:
    """A figure that says why there is nothing to plot, in place of an empty or
    misleading one (e.g. importances of a round with a single completed trial)."""
    with house_style():
        fig = _new_figure(size)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.set_title(title)
        ax.text(0.5, 0.5, "Nothing to plot\n\n" + textwrap.fill(message, 64), ha="center",
                va="center", fontsize=11, color="#333333", transform=ax.transAxes,
                bbox={"boxstyle": "round,pad=1.0", "facecolor": "#EEEEEE",
                      "edgecolor": "#AAAAAA"})
        _save(fig, out_png, notes)


# ---------------------------------------------------------------- training curves

_CURVE_LABELS = {"accuracy": "accuracy", "loss": "loss (cross-entropy)"}


def _seed_groups(history: pd.DataFrame) -> list[tuple[object, pd.DataFrame]]:
    if "seed" not in history.columns:
        return [(None, history.sort_values("epoch"))]
    return [(seed, group.sort_values("epoch")) for seed, group in history.groupby("seed")]


def plot_curve(
    history: pd.DataFrame, metric: str, out_png: str, title: str, notes: Sequence[str] = ()
) -> None:
    """Training and validation `metric` per epoch (the study's Figures 1 and 2).

    One pair of lines per seed; a star marks the epoch whose weights were kept (lowest
    validation loss, as early stopping restores them).
    """
    if metric not in _CURVE_LABELS:
        raise ValueError(f"metric must be one of {sorted(_CURVE_LABELS)}, got {metric!r}")
    groups = _seed_groups(history)
    alpha = 1.0 if len(groups) == 1 else 0.75
    with house_style():
        fig = _new_figure(CURVE_SIZE)
        ax = fig.add_subplot()
        for _, group in groups:
            epochs = group["epoch"].to_numpy()
            ax.plot(epochs, group[metric], color=TRAIN_COLOR, lw=1.6, alpha=alpha)
            ax.plot(epochs, group[f"val_{metric}"], color=VALID_COLOR, lw=1.6, ls="--",
                    alpha=alpha)
            kept = int(np.argmin(group["val_loss"].to_numpy()))
            ax.plot(epochs[kept], group[f"val_{metric}"].iloc[kept], marker="*", ms=13,
                    color=VALID_COLOR, markeredgecolor="black", ls="none")
        seeds = "" if groups[0][0] is None else (
            f" ({len(groups)} seeds, one line each)" if len(groups) > 1 else
            f" (seed {groups[0][0]})"
        )
        ax.legend(
            handles=[
                Line2D([], [], color=TRAIN_COLOR, lw=1.6, label="training"),
                Line2D([], [], color=VALID_COLOR, lw=1.6, ls="--", label="validation"),
                Line2D([], [], color=VALID_COLOR, marker="*", ms=11, ls="none",
                       markeredgecolor="black", label="weights kept (lowest val. loss)"),
            ],
            loc="best",
            facecolor="white", framealpha=0.9,
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel(_CURVE_LABELS[metric])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "accuracy":
            ax.set_ylim(0.0, 1.02)
        else:
            ax.set_ylim(bottom=0.0)
        ax.set_title(f"Training and validation {metric}\n{title}{seeds}")
        _save(fig, out_png, notes)


def plot_training_curves(
    history: pd.DataFrame, out_accuracy: str, out_loss: str, title: str,
    notes: Sequence[str] = (),
) -> None:
    plot_curve(history, "accuracy", out_accuracy, title, notes)
    plot_curve(history, "loss", out_loss, title, notes)


# --------------------------------------------------------------- confusion matrix


def row_rates(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the recall of each true class); empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.zeros_like(matrix)
    np.divide(matrix, totals, out=rates, where=totals > 0)
    return rates


def plot_confusion_matrix(
    matrix, labels: Sequence[str], out_png: str, title: str, notes: Sequence[str] = ()
) -> None:
    """Counts and row-normalised rates in every cell, coloured by rate."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} labels")
    rates = row_rates(matrix)
    with house_style():
        fig = _new_figure(CONFUSION_SIZE)
        ax = fig.add_subplot()
        ax.grid(False)
        image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        font = 9 if n <= 10 else 7
        for (i, j), count in np.ndenumerate(matrix):
            if count == 0 and i != j:
                continue  # empty off-diagonal cells stay blank, so errors stand out
            color = "white" if rates[i, j] > 0.55 else "#222222"
            rate = f"{rates[i, j]:.0%}" if matrix[i].sum() else "none"
            ax.text(j, i, f"{count}\n{rate}", ha="center", va="center",
                    fontsize=font, color=color, linespacing=1.1)
        ax.set_xticks(range(n), labels, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted genre")
        ax.set_ylabel("true genre")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.85,
                     label="share of each true genre (row-normalised)")
        _save(fig, out_png, notes)


# ------------------------------------------------------------------ final models


def scores_figure_size(n_models: int) -> tuple[float, float]:
    # Quarters of an inch: exact in binary, so every size is a whole number of pixels.
    return (9.0, 2.25 + 0.75 * max(n_models, 1))


def plot_final_scores(summary: pd.DataFrame, out_png: str, notes: Sequence[str] = ()) -> None:
    """Every final model in its validation rank (the chosen one at the top): validation
    macro-F1 beside test macro-F1 with its bootstrap interval over test tracks."""
    ranked = summary.sort_values("rank", kind="mergesort")
    names = [f"{row.model}, round {row.round}" + ("  (chosen)" if row.chosen else "")
             for row in ranked.itertuples()]
    valid = ranked["valid_macro_f1_mean"].to_numpy(dtype=float)
    test = ranked["test_macro_f1_mean"].to_numpy(dtype=float)
    high = ranked["test_macro_f1_high"].to_numpy(dtype=float)
    errors = np.nan_to_num(np.vstack([test - ranked["test_macro_f1_low"].to_numpy(dtype=float),
                                      high - test]))
    positions = np.arange(len(ranked))[::-1]
    with house_style():
        fig = _new_figure(scores_figure_size(len(ranked)))
        ax = fig.add_subplot()
        ax.barh(positions + 0.2, valid, height=0.38, color="#BBBBBB",
                label="validation (chooses the model)")
        ax.barh(positions - 0.2, test, height=0.38, xerr=errors, color=TRAIN_COLOR,
                error_kw={"ecolor": "#222222", "capsize": 3, "lw": 1.2},
                label="test, with its 95% interval over test tracks")
        for y, value, top in zip(positions, test, np.where(np.isnan(high), test, high)):
            ax.text(min(float(top) + 0.015, 0.93), y - 0.2, f"{value:.3f}", va="center",
                    ha="left", color="#222222", fontsize=9)
        ax.set_yticks(positions, names)
        for label in ax.get_yticklabels():
            label.set_fontweight("bold" if label.get_text().endswith("(chosen)") else "normal")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("macro-F1 (mean over seeds)")
        ax.legend(loc="lower right", fontsize=8.5)
        seeds = sorted(set(ranked["n_seeds"]))
        ax.set_title(
            "Final models, ranked by validation macro-F1"
            + (f" ({seeds[0]} seed{'s' if seeds[0] > 1 else ''} each)" if len(seeds) == 1 else "")
        )
        _save(fig, out_png, notes)


def plot_final(
    metrics_json: str, history_csv: str, out_accuracy: str, out_loss: str,
    out_confusion: str, genres: Sequence[str], log=print,
) -> None:
    """The three figures of one final model, from its combined metrics and history."""
    from genreflow.run_info import caveats

    metrics = read_json(metrics_json)
    notes = caveats(metrics)
    title = f"{metrics['model']}, round {metrics['round']}"
    plot_training_curves(pd.read_csv(history_csv), out_accuracy, out_loss, title, notes)
    level = metrics["level"]
    matrix = np.asarray(metrics["test"][level]["confusion_matrix_pooled"])
    unit = "tracks" if metrics.get("segmented") else "clips"
    per_seed = matrix.sum() // max(metrics["n_seeds"], 1)
    pooled = (
        f"{metrics['n_seeds']} seeds pooled, {per_seed} test {unit} each"
        if metrics["n_seeds"] > 1 else f"seed {metrics['seeds'][0]}, {per_seed} test {unit}"
    )
    plot_confusion_matrix(matrix, genres, out_confusion,
                          f"Confusion matrix: {title}\n({pooled})", notes)
    log(f"wrote {out_accuracy}, {out_loss}, {out_confusion}")


# ------------------------------------------------------------------ tuning rounds


def load_study(journal: str | os.PathLike, study_name: str | None = None, log=print):
    """A study of a journal file, by name; without a name, the journal's only study.

    A tuning round's journal holds one study per configuration it was run with (the name
    carries a fingerprint of the round), so the round's best_trial.json names the study.
    """
    import optuna

    from genreflow.journal import journal_storage

    if not os.path.isfile(journal):
        # Opening would silently create an empty journal.
        raise FileNotFoundError(f"Optuna journal {journal} does not exist")
    storage = journal_storage(journal, log)
    names = optuna.study.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise ValueError(
                f"{journal} holds {len(names)} studies {names}; name the one to plot"
            )
        study_name = names[0]
    elif study_name not in names:
        raise ValueError(f"{journal} holds no study {study_name!r}; it holds {names}")
    return optuna.load_study(study_name=study_name, storage=storage)


def _complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def varying_params(study) -> list[str]:
    """Hyperparameters that took more than one value over the completed trials."""
    values: dict[str, set] = {}
    for trial in _complete_trials(study):
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def trial_counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    return counts


@contextlib.contextmanager
def _optuna_figure(
    out_png: str, title: str, notes: Sequence[str], constrained: bool = True
) -> Iterator[dict]:
    """Run an Optuna matplotlib plot in the house style; the caller puts its Axes in
    the yielded dict; the figure is resized, retitled and saved here.

    The parallel-coordinate plot (twin axes, a colorbar made outside any grid) breaks
    constrained layout, so it gets tight layout below the caveat banner instead.
    """
    import optuna

    holder: dict = {}
    with house_style(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield holder
        ax = holder["ax"]
        fig = ax.figure
        fig.set_size_inches(*TUNING_SIZE)
        fig.set_dpi(DPI)
        for loc in ("left", "right"):
            ax.set_title("", loc=loc)  # Optuna's own titles
        ax.set_title(title, fontsize=STYLE["axes.titlesize"])
        ax.xaxis.label.set_size(STYLE["axes.labelsize"])
        ax.yaxis.label.set_size(STYLE["axes.labelsize"])
        if constrained:
            fig.set_layout_engine("constrained")
        else:
            banner = len(caveat_lines(notes)) * 1.5 * STYLE["figure.titlesize"] / 72
            fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - banner / TUNING_SIZE[1]))
        _save(fig, out_png, notes)


def _target_name(objective: str | None) -> str:
    if not objective:
        return "objective value"
    return objective.replace("valid_", "validation ").replace("_", "-").replace("macro-f1", "macro-F1")


def plot_optimization_history(
    study, out_png: str, title: str, notes: Sequence[str] = (), objective: str | None = None
) -> None:
    from optuna.visualization.matplotlib import plot_optimization_history as optuna_plot

    counts = trial_counts(study)
    if counts["complete"] == 0:
        placeholder_figure(
            f"No completed trials in this round ({counts['pruned']} pruned, "
            f"{counts['fail']} failed): no optimisation history to show.",
            out_png, title, notes,
        )
        return
    with _optuna_figure(out_png, title, notes) as holder:
        ax = optuna_plot(study, target_name=_target_name(objective))
        ax.set_xlabel("trial number")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(facecolor="white", framealpha=0.9, loc="best")
        holder["ax"] = ax


def plot_param_importances(
    study, out_png: str, title: str, notes: Sequence[str] = (), objective: str | None = None
) -> None:
    """Optuna's default (PED-ANOVA) importances of the hyperparameters that varied.

    Needs at least two completed trials and one varying hyperparameter; when Optuna
    itself says the importances would all be equal (too few trials to tell them apart),
    a placeholder says so instead of showing equal bars.
    """
    import optuna
    from optuna.visualization.matplotlib import plot_param_importances as optuna_plot

    n_complete = len(_complete_trials(study))
    params = varying_params(study)
    reason = None
    if n_complete < 2:
        reason = (f"Hyperparameter importances need at least 2 completed trials; "
                  f"this round has {n_complete}.")
    elif not params:
        reason = (f"All {n_complete} completed trials used the same hyperparameters: "
                  "there is no variation to attribute.")
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optuna.importance.get_param_importances(study, params=params)
        equal = [w for w in caught if "will be equal" in str(w.message)]
        if equal:
            reason = (f"Optuna cannot tell the hyperparameters apart with these "
                      f"{n_complete} completed trials ({equal[0].message})")
    if reason:
        placeholder_figure(reason, out_png, title, notes)
        return
    if len(params) == 1:
        title += f"\n(only {params[0]} varied, so it gets all the importance)"
    with _optuna_figure(out_png, title, notes) as holder:
        ax = optuna_plot(study, params=params, target_name=_target_name(objective))
        ax.set_xlabel(f"importance for {_target_name(objective)} (PED-ANOVA)")
        ax.set_ylabel("hyperparameter")
        holder["ax"] = ax


def plot_parallel_coordinate(
    study, out_png: str, title: str, notes: Sequence[str] = (), objective: str | None = None
) -> None:
    """Each completed trial as a line through the hyperparameters that varied."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate as optuna_plot

    n_complete = len(_complete_trials(study))
    params = varying_params(study)
    if n_complete < 2 or not params:
        placeholder_figure(
            f"A parallel-coordinate plot needs at least 2 completed trials with some "
            f"hyperparameter varying; this round has {n_complete} completed trial(s) "
            f"and {len(params)} varying hyperparameter(s).",
            out_png, title, notes,
        )
        return
    with _optuna_figure(out_png, title, notes, constrained=False) as holder:
        ax = optuna_plot(study, params=params, target_name=_target_name(objective))
        _tidy_parallel_axes(ax, study, params)
        holder["ax"] = ax


def _tidy_parallel_axes(ax, study, params: Sequence[str]) -> None:
    """Optuna draws one twin axis per hyperparameter inside the plot: drop their grids
    (a tangle of white lines in this style), put a backing under their tick labels so
    that lines do not run through them, give integer hyperparameters integer ticks and
    log-scale ones a few plain labels; and start the colour map at a visible blue (Optuna's
    starts at white, which hides the worst trials)."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LinearSegmentedColormap
    from optuna.distributions import IntDistribution

    ax.tick_params(axis="x", labelrotation=25)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    # Creation order: the main axes, the colorbar, then one twin per hyperparameter
    # in the (sorted) order of `params`.
    twins = [other for other in ax.figure.axes
             if other is not ax and other.get_label() != "<colorbar>"]
    distributions = _complete_trials(study)[-1].distributions
    for name, twin in zip(params, twins):
        twin.grid(False)
        twin.tick_params(axis="y", labelsize=8.5)
        distribution = distributions.get(name)
        integer = isinstance(distribution, IntDistribution)
        if twin.get_yscale() == "log":
            _plain_log_ticks(twin, integer)
        elif integer:
            twin.yaxis.set_major_locator(MaxNLocator(integer=True))
        for label in twin.get_yticklabels():
            label.set_bbox({"facecolor": "white", "alpha": 0.8, "edgecolor": "none",
                            "pad": 1.0})
    ax.grid(False)
    for lines in ax.collections:
        if isinstance(lines, LineCollection) and lines.get_array() is not None:
            base = lines.get_cmap()
            lines.set_cmap(LinearSegmentedColormap.from_list(
                f"{base.name}_visible", base(np.linspace(0.3, 1.0, 256))))
            if lines.colorbar is not None:
                lines.colorbar.update_normal(lines)


def _plain_log_ticks(axis, integer: bool, n: int = 5) -> None:
    """A few geometrically spaced, plainly written ticks on a log axis (Optuna's default
    labels minor ticks as 2.05 x 10^1 and the like)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter, NullLocator

    low, high = axis.get_ylim()
    ticks = np.geomspace(low, high, n)
    if integer:
        ticks = np.unique(np.round(ticks))
        labels = [f"{tick:.0f}" for tick in ticks]
    else:
        # As few digits as keep the labels apart (a narrow range needs more).
        for digits in range(1, 5):
            labels = [f"{tick:.{digits}e}" for tick in ticks]
            if len(set(labels)) == len(labels):
                break
    axis.yaxis.set_major_locator(FixedLocator(ticks))
    axis.yaxis.set_major_formatter(FixedFormatter(labels))
    axis.yaxis.set_minor_locator(NullLocator())
    axis.yaxis.set_minor_formatter(NullFormatter())


def plot_tuning_round(
    journal: str, best_trial_json: str, about: Mapping, out_history: str,
    out_importances: str, out_parallel: str, log=print,
) -> None:
    """Optimisation history, hyperparameter importances and parallel coordinates of one
    tuning round's study."""
    from genreflow.registry import model_label
    from genreflow.run_info import caveats

    best = read_json(best_trial_json)
    study = load_study(journal, best.get("study_name"), log)
    notes = caveats(about)
    objective = best.get("objective")
    # The counts of the round's n_trials, as collect_round counted them (trials given back
    # or interrupted are in the journal too, but not in the round).
    name = (
        f"{model_label(about['backbone'], about['feature'])}, tuning round {about['round']}"
        f" ({best.get('sampler', 'sampler ?')}: {best.get('n_complete')} complete, "
        f"{best.get('n_pruned')} pruned, {best.get('n_failed')} failed)"
    )
    plot_optimization_history(study, out_history, f"Optimisation history\n{name}", notes,
                              objective)
    plot_param_importances(study, out_importances, f"Hyperparameter importances\n{name}",
                           notes, objective)
    plot_parallel_coordinate(study, out_parallel, f"Parallel coordinates\n{name}", notes,
                             objective)
    log(f"study {study.study_name}: wrote {out_history}, {out_importances}, {out_parallel}")
