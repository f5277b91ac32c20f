from genreflow.corpus import collect_checks
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    collect_checks(
        shard_csvs=list(snakemake.input),
        clips_csv=snakemake.output.clips,
        rejected_csv=snakemake.output.rejected,
        log=log,
    )
