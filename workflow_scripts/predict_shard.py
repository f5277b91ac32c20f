import os

from genreflow.jobs import logged_job
from genreflow.predict import predict_shard
from genreflow.screening import limit_threads

with logged_job(snakemake) as log:
    limit_threads(snakemake.threads)
    predict_shard(
        bundle_dir=os.path.dirname(snakemake.input.model),
        paths=list(snakemake.input.audio),
        out_predictions=snakemake.output.predictions,
        out_rejected=snakemake.output.rejected,
        log=log,
    )
