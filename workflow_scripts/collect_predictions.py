from genreflow.jobs import logged_job
from genreflow.predict.workflow import collect_predictions

with logged_job(snakemake) as log:
    collect_predictions(
        shard_predictions=list(snakemake.input.predictions),
        shard_rejected=list(snakemake.input.rejected),
        not_audio=snakemake.params.not_audio,
        preprocessing_json=snakemake.input.preprocessing,
        out_predictions=snakemake.output.predictions,
        out_rejected=snakemake.output.rejected,
        out_figure=snakemake.output.figure,
        log=log,
    )
