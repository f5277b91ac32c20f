from genreflow.evaluation.unfamiliar import fit_unfamiliarity
from genreflow.jobs import logged_job, prepare_tensorflow
from genreflow.names import SPLITS

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    fit_unfamiliarity(
        metrics_jsons=list(snakemake.input.metrics),
        model_kerases=list(snakemake.input.models),
        predictions_csvs=list(snakemake.input.predictions),
        manifests={split: snakemake.input[split] for split in SPLITS},
        index_csv=snakemake.input.get("index"),
        embeddings_npz=snakemake.input.get("embeddings"),
        genres=snakemake.params.genres,
        rate=snakemake.params.rate,
        out_stats=snakemake.output.stats,
        out_scores=snakemake.output.scores,
        out_summary=snakemake.output.summary,
        log=log,
    )
