from genreflow.jobs import logged_job
from genreflow.plots.final import plot_final

with logged_job(snakemake) as log:
    plot_final(
        metrics_json=snakemake.input.metrics,
        history_csv=snakemake.input.history,
        out_accuracy=snakemake.output.accuracy,
        out_loss=snakemake.output.loss,
        out_confusion=snakemake.output.confusion,
        genres=snakemake.params.genres,
        log=log,
    )
