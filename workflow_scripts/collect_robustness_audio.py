from genreflow.jobs import logged_job
from genreflow.robustness.conditions import join_condition_tables

with logged_job(snakemake) as log:
    join_condition_tables(list(snakemake.input), snakemake.output[0], log=log)
