import pandas as pd

from genreflow.audio import AudioSettings
from genreflow.features import make_shard_images
from genreflow.jobs import logged_job

feature = snakemake.wildcards.feature
with logged_job(snakemake) as log:
    checked = pd.read_csv(snakemake.input[0], keep_default_na=False)
    make_shard_images(
        accepted_clips=checked[checked.status == "accepted"],
        features={feature: snakemake.params.block},
        audio=AudioSettings.from_config(snakemake.params.audio),
        segment_seconds=snakemake.params.segment_seconds,
        image_size=snakemake.params.image_size,
        image_dirs={feature: snakemake.output.images},
        index_paths={feature: snakemake.output.index},
        log=log,
    )
