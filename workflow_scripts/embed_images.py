from genreflow.jobs import logged_job
from genreflow.jobs import prepare_tensorflow
from genreflow.screening import embed_index

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    embed_index(
        backbone=snakemake.wildcards.backbone,
        image_size=snakemake.params.image_size,
        weights_setting=snakemake.params.weights,
        weights_path=snakemake.input.get("weights"),
        index_csv=snakemake.input.index,
        genres=snakemake.params.genres,
        out_npz=snakemake.output[0],
        batch_size=snakemake.params.batch_size,
        seed=snakemake.params.seed,
        log=log,
    )
