from genreflow.jobs import logged_job, prepare_tensorflow
from genreflow.robustness.score import score_final_models

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    score_final_models(
        model_kerases=list(snakemake.input.models),
        models=snakemake.params.models,
        backbone=snakemake.wildcards.backbone,
        clean_input=snakemake.input.clean,
        conditions_input=snakemake.input.conditions,
        test_csv=snakemake.input.test,
        conditions=snakemake.params.conditions,
        genres=snakemake.params.genres,
        image_size=snakemake.params.image_size,
        out_predictions=snakemake.output.predictions,
        log=log,
    )
