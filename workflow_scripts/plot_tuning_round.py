from genreflow.jobs import logged_job
from genreflow.plots.tuning import plot_tuning_round

with logged_job(snakemake) as log:
    plot_tuning_round(
        journal=snakemake.params.journal,
        best_trial_json=snakemake.input.best,
        about=snakemake.params.about,
        out_history=snakemake.output.history,
        out_importances=snakemake.output.importances,
        out_parallel=snakemake.output.parallel,
        log=log,
    )
