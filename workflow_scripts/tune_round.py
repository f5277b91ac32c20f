from genreflow.device import prepare_tensorflow
from genreflow.jobs import logged_job
from genreflow.tuning.model_data import ModelInputs
from genreflow.tuning.worker import RoundJob, run_worker

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    job = RoundJob(
        backbone=snakemake.wildcards.backbone,
        feature=snakemake.wildcards.feature,
        round_number=int(snakemake.wildcards.round),
        worker=int(snakemake.wildcards.worker),
        workers=snakemake.params.workers,
        round_block=snakemake.params.round,
        defaults=snakemake.params.defaults,
        inherited=snakemake.params.inherited,
        pruner=snakemake.params.pruner,
        settings=snakemake.params.settings,
        journal=snakemake.params.journal,
    )
    run_worker(
        job,
        ModelInputs.of_job(snakemake.input),
        previous_best=snakemake.input.get("previous"),
        out_json=snakemake.output[0],
        log=log,
    )
