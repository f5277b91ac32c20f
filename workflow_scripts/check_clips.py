from genreflow.audio import AudioSettings
from genreflow.corpus import check_shard
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    check_shard(
        clips=snakemake.params.clips,
        audio=AudioSettings.from_config(snakemake.params.audio),
        on_bad_file=snakemake.params.on_bad_file,
        out_csv=snakemake.output[0],
        log=log,
    )
