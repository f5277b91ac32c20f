from genreflow.jobs import prepare_tensorflow
from genreflow.jobs import logged_job
from genreflow.models.data import ModelInputs, ModelSettings
from genreflow.tuning.worker import RoundJob, RoundSpec, run_worker

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    run_worker(
        job=RoundJob(
            backbone=snakemake.wildcards.backbone,
            feature=snakemake.wildcards.feature,
            round_number=int(snakemake.wildcards.round),
            worker=int(snakemake.wildcards.worker),
            workers=snakemake.params.workers,
            journal=snakemake.params.journal,
        ),
        spec=RoundSpec(
            block=snakemake.params.round,
            defaults=snakemake.params.defaults,
            inherited=snakemake.params.inherited,
            pruner=snakemake.params.pruner,
        ),
        settings=ModelSettings.from_params(snakemake.params.settings),
        inputs=ModelInputs.of_job(snakemake.input),
        previous_best=snakemake.input.get("previous"),
        out_json=snakemake.output[0],
        log=log,
    )
