from genreflow.evaluation import train_final
from genreflow.jobs import logged_job
from genreflow.scoring import SPLITS
from genreflow.device import prepare_tensorflow

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    train_final(
        best_trial_json=snakemake.input.best,
        seed=int(snakemake.wildcards.seed),
        index_csv=snakemake.input.get("index"),
        embeddings_npz=snakemake.input.get("embeddings"),
        manifests={split: snakemake.input[split] for split in SPLITS},
        settings=snakemake.params.settings,
        weights_path=snakemake.input.get("weights"),
        about=snakemake.params.about,
        training=snakemake.params.training,
        out_metrics=snakemake.output.metrics,
        out_predictions=snakemake.output.predictions,
        out_history=snakemake.output.history,
        out_model=snakemake.output.model,
        log=log,
    )
