import os

from genreflow.jobs import logged_job
from genreflow.predict.workflow import predict_shard
from genreflow.jobs import prepare_tensorflow

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    predict_shard(
        bundle_dir=os.path.dirname(snakemake.input.model),
        paths=list(snakemake.input.audio),
        out_predictions=snakemake.output.predictions,
        out_rejected=snakemake.output.rejected,
        log=log,
    )
