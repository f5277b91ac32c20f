from genreflow.features import join_indexes
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    join_indexes(list(snakemake.input), snakemake.output[0], log=log)
