# Stage 8, predict: the validation-chosen final model (or predict.model) exported as a
# self-contained bundle, and the bundle run on a folder of the user's own music, a shard of
# files per job. The bundle is the one source of the preprocessing, so `snakemake predict`
# and genreflow.predict.load_bundle(...).predict_file(...) give the same numbers.


localrules:
    export,
    export_model,
    mark_chosen_bundle,
    predict,
    collect_predictions,


rule export:
    input:
        get_exported_bundle,
        f"{plan.EXPORTS}/chosen.json",


rule export_model:
    input:
        unpack(get_export_inputs),
    output:
        model=f"{plan.EXPORT}/model.keras",
        unfamiliarity=f"{plan.EXPORT}/unfamiliarity.npz",
        preprocessing=f"{plan.EXPORT}/preprocessing.json",
        readme=f"{plan.EXPORT}/README.md",
    log:
        "logs/export_model/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        settings=get_export_settings,
    script:
        "../workflow_scripts/export_model.py"


# results/export/chosen.json: which bundle holds the model chosen on validation, so that
# load_bundle("results/export") finds it.
rule mark_chosen_bundle:
    input:
        unpack(get_chosen_bundle),
    output:
        f"{plan.EXPORTS}/chosen.json",
    log:
        "logs/mark_chosen_bundle/mark_chosen_bundle.log",
    conda:
        "../envs/tensorflow.yaml"
    script:
        "../workflow_scripts/mark_chosen_bundle.py"


rule predict:
    input:
        get_predict_targets,


rule predict_shard:
    input:
        unpack(get_predict_bundle),
        audio=get_predict_shard_files,
    output:
        predictions=f"{plan.PREDICTIONS}/shards/{{shard}}.csv",
        rejected=f"{plan.PREDICTIONS}/shards/{{shard}}.rejected.csv",
    log:
        "logs/predict_shard/{name}/{shard}.log",
    benchmark:
        "benchmarks/predict_shard/{name}/{shard}.tsv"
    conda:
        GPU_ENV
    threads: TENSORFLOW_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=120,
    params:
        mixed_precision=config["training"]["mixed_precision"],
    script:
        "../workflow_scripts/predict_shard.py"


rule collect_predictions:
    input:
        unpack(get_predict_bundle),
        predictions=get_every_predict_shard(rules.predict_shard.output.predictions),
        rejected=get_every_predict_shard(rules.predict_shard.output.rejected),
    output:
        predictions=report(
            f"{plan.PREDICTIONS}/predictions.csv",
            caption="../workflow_scripts/genreflow/report/predict_table.rst",
            category="Predictions",
            labels={"result": "predicted genre per file (CSV)"},
        ),
        rejected=f"{plan.PREDICTIONS}/rejected.csv",
        figure=report(
            f"{plan.PREDICTIONS}/probabilities.png",
            caption="../workflow_scripts/genreflow/report/predict_figure.rst",
            category="Predictions",
            labels={"result": "genre probabilities per file (figure)"},
        ),
    log:
        "logs/collect_predictions/{name}.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        not_audio=PREDICT_NOT_AUDIO,
        notes=caveats(RUN_ABOUT),
        about=RUN_ABOUT,
        unfamiliar_rate=PREDICT["unfamiliar_rate"],
    script:
        "../workflow_scripts/collect_predictions.py"
