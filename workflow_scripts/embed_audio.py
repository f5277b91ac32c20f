import os

# musicnn is TF1 graph code on the legacy tf-keras: this must be set before TensorFlow is
# imported, which is why audio backbones get a process (and an environment) of their own.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pandas as pd

from genreflow.audio import AudioSettings
from genreflow.audio_embeddings import SAMPLE_RATE, embed_shard
from genreflow.jobs import logged_job
from genreflow.jobs import prepare_tensorflow

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, "off")
    checked = pd.read_csv(snakemake.input.clips, keep_default_na=False)
    embed_shard(
        backbone=snakemake.wildcards.backbone,
        # <checkpoints>/<MSD_musicnn|MTT_musicnn>/.index: the folder above the model's
        checkpoints=os.path.dirname(os.path.dirname(snakemake.input.checkpoint_index)),
        layer=snakemake.params.layer,
        accepted_clips=checked[checked.status == "accepted"],
        # musicnn's own rate: the clips are resampled from their files to 16 kHz
        audio=AudioSettings.from_config({**snakemake.params.audio, "sample_rate": SAMPLE_RATE}),
        segment_seconds=snakemake.params.segment_seconds,
        genres=snakemake.params.genres,
        out_npz=snakemake.output[0],
        batch_size=snakemake.params.batch_size,
        log=log,
    )
