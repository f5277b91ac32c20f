# Stage 6, evaluation: the best configuration of every tuning round (and the baseline
# CNN) is trained again, once per seed (one job per seed, so seeds run side by side and
# a killed job loses one), and tested once on the held-out split; seeds are combined
# into mean ± sd, models into the study's Table 5. Figures of the final models and of
# the tuning rounds go to the report.


localrules:
    final,
    combine_final_seeds,
    plot_final,
    summarize_final,


rule final:
    input:
        "results/final/summary.csv",
        final_figures,
        tuning_figures,


rule train_final:
    input:
        unpack(backbone_weights),
        unpack(split_manifest_files),
        unpack(model_data),
        best="results/tuning/{backbone}/{feature}/round_{round}/best_trial.json",
    output:
        metrics="results/final/{backbone}/{feature}/round_{round}/seed_{seed}/metrics.json",
        predictions="results/final/{backbone}/{feature}/round_{round}/seed_{seed}/predictions.csv",
        history="results/final/{backbone}/{feature}/round_{round}/seed_{seed}/history.csv",
        model="results/final/{backbone}/{feature}/round_{round}/seed_{seed}/model.keras",
    log:
        "logs/train_final/{backbone}/{feature}/round_{round}/seed_{seed}.log",
    benchmark:
        "benchmarks/train_final/{backbone}/{feature}/round_{round}/seed_{seed}.tsv"
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        GPU_ENV
    threads: TENSORFLOW_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=240,
    params:
        mixed_precision=config["training"]["mixed_precision"],
        settings=tuning_settings,  # final models are built as their trials were
        about=model_about,
        training=final_training(),
    script:
        "../workflow_scripts/train_final.py"


rule combine_final_seeds:
    input:
        unpack(final_seed_files),
    output:
        metrics="results/final/{backbone}/{feature}/round_{round}/metrics.json",
        predictions="results/final/{backbone}/{feature}/round_{round}/predictions.csv",
        history="results/final/{backbone}/{feature}/round_{round}/history.csv",
    log:
        "logs/combine_final_seeds/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        genres=GENRES,
    script:
        "../workflow_scripts/combine_final_seeds.py"


rule plot_final:
    input:
        metrics="results/final/{backbone}/{feature}/round_{round}/metrics.json",
        history="results/final/{backbone}/{feature}/round_{round}/history.csv",
    output:
        accuracy=report(
            "results/final/{backbone}/{feature}/round_{round}/accuracy.png",
            caption="../workflow_scripts/genreflow/report/final_accuracy.rst",
            category="Final models",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "accuracy curves (Figure 1)",
            },
        ),
        loss=report(
            "results/final/{backbone}/{feature}/round_{round}/loss.png",
            caption="../workflow_scripts/genreflow/report/final_loss.rst",
            category="Final models",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "loss curves (Figure 2)",
            },
        ),
        confusion=report(
            "results/final/{backbone}/{feature}/round_{round}/confusion_matrix.png",
            caption="../workflow_scripts/genreflow/report/final_confusion.rst",
            category="Final models",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "confusion matrix",
            },
        ),
    log:
        "logs/plot_final/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        genres=GENRES,
        seeds=EVALUATION["seeds"],
        about=model_about,
        notes=model_notes,
    script:
        "../workflow_scripts/plot_final.py"


checkpoint summarize_final:
    input:
        metrics=final_files("metrics.json"),
        predictions=final_files("predictions.csv"),
    output:
        summary=report(
            "results/final/summary.csv",
            caption="../workflow_scripts/genreflow/report/final_summary.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "all final models (CSV)"},
        ),
        table=report(
            "results/final/table5.md",
            caption="../workflow_scripts/genreflow/report/final_table5.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "Table 5: macro-F1 per model and round"},
        ),
        scores=report(
            "results/final/scores.png",
            caption="../workflow_scripts/genreflow/report/final_scores.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "validation and test macro-F1 per model (figure)"},
        ),
        # the chosen model's test scores, for the report's front page
        headline="results/final/headline.json",
    log:
        "logs/summarize_final/summarize_final.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        about=run_about(),
        notes=caveats(run_about()),
        seeds=EVALUATION["seeds"],
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
    script:
        "../workflow_scripts/summarize_final.py"
