from genreflow.jobs import logged_job
from genreflow.robustness.conditions import render_test_songs

with logged_job(snakemake) as log:
    render_test_songs(
        clips_csv=snakemake.input.clips,
        test_csv=snakemake.input.test,
        synthetic=snakemake.params.synthetic,
        condition=snakemake.params.condition,
        out_folder=snakemake.output.clips,
        out_table=snakemake.output.table,
        log=log,
    )
