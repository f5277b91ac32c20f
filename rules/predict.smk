# Stage 8, predict: the validation-chosen final model (or predict.model) exported as a
# self-contained bundle, and the bundle run on a folder of the user's own music, a shard of
# files per job. The bundle is the one source of the preprocessing, so `snakemake predict`
# and genreflow.predict.load_bundle(...).predict_file(...) give the same numbers.


localrules:
    export,
    export_model,
    predict,
    collect_predictions,


rule export:
    input:
        exported_bundle,


rule export_model:
    input:
        unpack(export_inputs),
    output:
        model="results/export/{backbone}/{feature}/round_{round}/model.keras",
        preprocessing="results/export/{backbone}/{feature}/round_{round}/preprocessing.json",
        readme="results/export/{backbone}/{feature}/round_{round}/README.md",
    log:
        "logs/export_model/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        settings=export_settings,
    script:
        "../workflow_scripts/export_model.py"


rule predict:
    input:
        predict_targets,


rule predict_shard:
    input:
        unpack(predict_bundle),
        audio=predict_shard_files,
    output:
        predictions="results/predict/{name}/shards/{shard}.csv",
        rejected="results/predict/{name}/shards/{shard}.rejected.csv",
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
        unpack(predict_bundle),
        predictions=every_predict_shard("results/predict/{name}/shards/{shard}.csv"),
        rejected=every_predict_shard(
            "results/predict/{name}/shards/{shard}.rejected.csv"
        ),
    output:
        predictions=report(
            "results/predict/{name}/predictions.csv",
            caption="../workflow_scripts/genreflow/report/predict_table.rst",
            category="Predictions",
            labels={"result": "predicted genre per file (CSV)"},
        ),
        rejected="results/predict/{name}/rejected.csv",
        figure=report(
            "results/predict/{name}/probabilities.png",
            caption="../workflow_scripts/genreflow/report/predict_figure.rst",
            category="Predictions",
            labels={"result": "genre probabilities per file (figure)"},
        ),
    log:
        "logs/collect_predictions/{name}.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        not_audio=predict_not_audio(),
        notes=caveats(run_about()),
        about=run_about(),
    script:
        "../workflow_scripts/collect_predictions.py"
