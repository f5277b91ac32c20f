from genreflow.jobs import prepare_tensorflow
from genreflow.evaluation.train import FINAL_OUTPUTS, train_final
from genreflow.jobs import logged_job
from genreflow.models.data import ModelInputs, ModelSettings

with logged_job(snakemake) as log:
    prepare_tensorflow(snakemake.threads, log, snakemake.params.mixed_precision)
    train_final(
        best_trial_json=snakemake.input.best,
        seed=int(snakemake.wildcards.seed),
        inputs=ModelInputs.of_job(snakemake.input),
        settings=ModelSettings.from_params(snakemake.params.settings),
        about=snakemake.params.about,
        training=snakemake.params.training,
        out={name: snakemake.output[name] for name in FINAL_OUTPUTS},
        log=log,
    )
