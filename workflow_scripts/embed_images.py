from genreflow.jobs import logged_job
from genreflow.screening import embed_index, limit_threads

with logged_job(snakemake) as log:
    limit_threads(snakemake.threads)
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
