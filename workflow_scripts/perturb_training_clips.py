from genreflow.audio import AudioSettings
from genreflow.augment.clips import perturb_training_clips
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    perturb_training_clips(
        clips_csv=snakemake.input.clips,
        manifests={split: snakemake.input[split] for split in snakemake.params.splits},
        family=snakemake.wildcards.family,
        spec=snakemake.params.family,
        families=snakemake.params.families,
        views=snakemake.params.views,
        seed=snakemake.params.seed,
        audio=AudioSettings.from_config(snakemake.params.audio),
        out_folder=snakemake.output.clips,
        out_table=snakemake.output.table,
        log=log,
    )
