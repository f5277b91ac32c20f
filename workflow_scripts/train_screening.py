from genreflow.jobs import logged_job
from genreflow.names import SPLITS
from genreflow.jobs import prepare_tensorflow
from genreflow.screening import screen_head

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    screen_head(
        embeddings_npz=snakemake.input.embeddings,
        manifests={split: snakemake.input[split] for split in SPLITS},
        head=snakemake.params.head,
        training=snakemake.params.training,
        genres=snakemake.params.genres,
        about=snakemake.params.about,
        out_metrics=snakemake.output.metrics,
        out_history=snakemake.output.history,
        out_predictions=snakemake.output.predictions,
        out_folds=snakemake.output.folds,
        log=log,
    )
