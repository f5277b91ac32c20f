"""Figures of a tuning round: optimisation history, hyperparameter importances and
parallel coordinates, from the round's study (opened through `genreflow.journal`)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genreflow.io import read_json  # noqa: E402
from genreflow.plots.style import (  # noqa: E402
    DPI,
    STYLE,
    TUNING_SIZE,
    caveat_lines,
    house_style,
    placeholder_figure,
    save_figure,
)


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
        save_figure(fig, out_png, notes)


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
    from genreflow.names import model_label
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
