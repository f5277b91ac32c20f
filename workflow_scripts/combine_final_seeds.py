from genreflow.evaluation.seeds import combine_seeds
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    combine_seeds(
        metrics_jsons=snakemake.input.metrics,
        predictions_csvs=snakemake.input.predictions,
        history_csvs=snakemake.input.history,
        genres=snakemake.params.genres,
        out_metrics=snakemake.output.metrics,
        out_predictions=snakemake.output.predictions,
        out_history=snakemake.output.history,
        log=log,
    )
