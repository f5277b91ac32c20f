"""The one look of every figure: Optuna's matplotlib plots force the "ggplot" style sheet,
so every figure uses it, with the same font sizes (`house_style`). Sizes are fixed (inches x
DPI, no tight bounding box), so a figure's pixel size does not depend on its content. When a
run is not pretrained or uses the synthetic demo corpus, every figure says so in red at its
top, in the words of `genreflow.run_info.caveats` (`save_figure`). PNGs are written
atomically."""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from collections.abc import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genreflow.io import write_bytes_atomic  # noqa: E402

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


def new_figure(size: tuple[float, float]):
    return plt.figure(figsize=size, dpi=DPI, layout="constrained")


def save_figure(fig, out_png: str | os.PathLike, notes: Sequence[str]) -> None:
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
        fig = new_figure(size)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.set_title(title)
        ax.text(0.5, 0.5, "Nothing to plot\n\n" + textwrap.fill(message, 64), ha="center",
                va="center", fontsize=11, color="#333333", transform=ax.transAxes,
                bbox={"boxstyle": "round,pad=1.0", "facecolor": "#EEEEEE",
                      "edgecolor": "#AAAAAA"})
        save_figure(fig, out_png, notes)
