from genreflow.jobs import logged_job
from genreflow.screening import fetch_weights_or_explain

with logged_job(snakemake) as log:
    fetch_weights_or_explain(snakemake.wildcards.backbone, snakemake.output[0], log=log)
