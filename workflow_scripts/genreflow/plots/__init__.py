"""Every figure of the workflow, as PNGs for the report: `style` (the one look, the caveat
banner, atomic writes), `screening` (the backbone x image type heatmap), `tuning` (tuning
rounds), `final` (final models), `segments` (whole clips vs segments), `predictions` (a
folder's predicted genres).

All figures share one look: Optuna's matplotlib plots force the "ggplot" style sheet,
so the others use it too, with the same font sizes. Sizes are fixed (inches x DPI, no
tight bounding box), so a figure's pixel size does not depend on its content. When a run
is not pretrained or uses the synthetic demo corpus, every figure says so in red at its
top, in the words of `genreflow.run_info.caveats`. PNGs are written atomically.

Only matplotlib, pandas and (for the tuning plots) Optuna are imported: plotting jobs
start fast and never load TensorFlow.
"""
