from genreflow.jobs import logged_job
from genreflow.scoring import SPLITS
from genreflow.device import prepare_tensorflow
from genreflow.tuning import run_worker

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    run_worker(
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
        index_csv=snakemake.input.get("index"),
        manifests={split: snakemake.input[split] for split in SPLITS},
        embeddings_npz=snakemake.input.get("embeddings"),
        weights_path=snakemake.input.get("weights"),
        previous_best=snakemake.input.get("previous"),
        journal=snakemake.params.journal,
        out_json=snakemake.output[0],
        log=log,
    )
