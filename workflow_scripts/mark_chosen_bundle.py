from genreflow.jobs import logged_job
from genreflow.predict.export import mark_chosen_bundle

with logged_job(snakemake) as log:
    mark_chosen_bundle(
        headline_json=snakemake.input.headline,
        preprocessing_json=snakemake.input.preprocessing,
        out_json=snakemake.output[0],
        log=log,
    )
