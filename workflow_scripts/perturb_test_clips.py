from genreflow.audio import AudioSettings
from genreflow.jobs import logged_job
from genreflow.robustness.conditions import perturb_test_clips

with logged_job(snakemake) as log:
    perturb_test_clips(
        clips_csv=snakemake.input.clips,
        test_csv=snakemake.input.test,
        name=snakemake.wildcards.condition,
        perturbation=snakemake.params.perturbation,
        seed=snakemake.params.seed,
        audio=AudioSettings.from_config(snakemake.params.audio),
        out_folder=snakemake.output.clips,
        out_table=snakemake.output.table,
        log=log,
    )
