from genreflow.jobs import logged_job
from genreflow.tuning.collect import collect_round

with logged_job(snakemake) as log:
    collect_round(
        worker_jsons=list(snakemake.input),
        backbone=snakemake.wildcards.backbone,
        feature=snakemake.wildcards.feature,
        round_number=int(snakemake.wildcards.round),
        round_block=snakemake.params.round,
        run=snakemake.params.about,
        out_best=snakemake.output.best,
        out_trials=snakemake.output.trials,
        log=log,
    )
