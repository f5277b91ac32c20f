# Stage 6, evaluation: the best configuration of every tuning round (and the baseline
# CNN) is trained again, once per seed (one job per seed, so seeds run side by side and
# a killed job loses one), and tested once on the held-out split; seeds are combined
# into mean ± sd, models into the study's Table 5. Each model's probabilities get a
# temperature fitted on validation (calibrate_final), and the seed it exports the
# statistics of its "unfamiliar" score (fit_unfamiliarity). Figures of the final models
# and of the tuning rounds go to the report.


localrules:
    final,
    combine_final_seeds,
    calibrate_final,
    plot_final,
    summarize_final,


rule final:
    input:
        f"{plan.FINAL}/summary.csv",
        get_final_figures,
        get_tuning_figures,
        get_final_files("reliability.png"),


rule train_final:
    input:
        unpack(get_backbone_weights),
        unpack(get_split_manifests),
        unpack(get_model_inputs),
        best=rules.collect_round.output.best,
    output:
        metrics=f"{plan.FINAL_SEED}/metrics.json",
        predictions=f"{plan.FINAL_SEED}/predictions.csv",
        history=f"{plan.FINAL_SEED}/history.csv",
        model=f"{plan.FINAL_SEED}/model.keras",
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
        settings=get_model_settings,  # final models are built as their trials were
        about=get_model_about,
        training=final_training(),
    script:
        "../workflow_scripts/train_final.py"


rule combine_final_seeds:
    input:
        unpack(get_final_seed_files),
    output:
        metrics=f"{plan.FINAL_MODEL}/metrics.json",
        predictions=f"{plan.FINAL_MODEL}/predictions.csv",
        history=f"{plan.FINAL_MODEL}/history.csv",
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


# A temperature per seed, fitted on the validation tracks only, and the test split's
# calibration before and after it (genreflow.evaluation.calibration).
rule calibrate_final:
    input:
        predictions=rules.combine_final_seeds.output.predictions,
    output:
        calibration=f"{plan.FINAL_MODEL}/calibration.json",
        reliability=report(
            f"{plan.FINAL_MODEL}/reliability.png",
            caption="../workflow_scripts/genreflow/report/final_reliability.rst",
            category="Final models",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "reliability diagram (calibration)",
            },
        ),
    log:
        "logs/calibrate_final/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        genres=GENRES,
        bins=EVALUATION["calibration_bins"],
        about=get_model_about,
        notes=get_model_notes,
    script:
        "../workflow_scripts/calibrate_final.py"


# The unfamiliar score of the seed a bundle exports: statistics of its training examples'
# representations, computed by its own model.keras, and a threshold on the validation
# tracks (genreflow.evaluation.unfamiliar). Made for the exported models (export_model).
rule fit_unfamiliarity:
    input:
        unpack(get_split_manifests),
        unpack(get_model_inputs),
        unpack(get_final_seed_models),
    output:
        stats=f"{plan.FINAL_MODEL}/unfamiliarity.npz",
        scores=f"{plan.FINAL_MODEL}/unfamiliarity.csv",
        summary=f"{plan.FINAL_MODEL}/unfamiliarity.json",
    log:
        "logs/fit_unfamiliarity/{backbone}/{feature}/round_{round}.log",
    benchmark:
        "benchmarks/fit_unfamiliarity/{backbone}/{feature}/round_{round}.tsv"
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        GPU_ENV
    threads: TENSORFLOW_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=60,
    params:
        mixed_precision=config["training"]["mixed_precision"],
        genres=GENRES,
        rate=config["predict"]["unfamiliar_rate"],
    script:
        "../workflow_scripts/fit_unfamiliarity.py"


rule plot_final:
    input:
        metrics=rules.combine_final_seeds.output.metrics,
        history=rules.combine_final_seeds.output.history,
    output:
        accuracy=report(
            f"{plan.FINAL_MODEL}/accuracy.png",
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
            f"{plan.FINAL_MODEL}/loss.png",
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
            f"{plan.FINAL_MODEL}/confusion_matrix.png",
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
        about=get_model_about,
        notes=get_model_notes,
    script:
        "../workflow_scripts/plot_final.py"


checkpoint summarize_final:
    input:
        metrics=get_final_files("metrics.json"),
        predictions=get_final_files("predictions.csv"),
        calibrations=get_final_files("calibration.json"),
    output:
        summary=report(
            f"{plan.FINAL}/summary.csv",
            caption="../workflow_scripts/genreflow/report/final_summary.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "all final models (CSV)"},
        ),
        table=f"{plan.FINAL}/table5.md",
        table_html=report(
            f"{plan.FINAL}/table5.html",
            caption="../workflow_scripts/genreflow/report/final_table5.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "Table 5: macro-F1 per model and round"},
        ),
        scores=report(
            f"{plan.FINAL}/scores.png",
            caption="../workflow_scripts/genreflow/report/final_scores.rst",
            category="Final models",
            subcategory="Summary",
            labels={"result": "validation and test macro-F1 per model (figure)"},
        ),
        # the chosen model's test scores, for the report's front page
        headline=HEADLINE,
    log:
        "logs/summarize_final/summarize_final.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        about=RUN_ABOUT,
        notes=caveats(RUN_ABOUT),
        seeds=EVALUATION["seeds"],
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
    script:
        "../workflow_scripts/summarize_final.py"
