from genreflow.corpus import collect_checks
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    collect_checks(
        shard_csvs=list(snakemake.input),
        not_clips=snakemake.params.not_clips,
        clips_csv=snakemake.output.clips,
        rejected_csv=snakemake.output.rejected,
        log=log,
    )
