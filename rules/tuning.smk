# Stage 5, tuning: chained Optuna rounds per selected (backbone, feature) and for the
# baseline CNN. Worker jobs share one study in a journal file next to the round's results;
# the collect checkpoint writes best_trial.json, which the next round's jobs read.


localrules:
    tuning,
    collect_round,
    plot_tuning_round,


rule tuning:
    input:
        get_final_best_trials,


rule tune_round:
    input:
        unpack(get_round_inputs),
    output:
        f"{plan.TUNING_ROUND}/workers/{{worker}}.json",
    log:
        "logs/tune_round/{backbone}/{feature}/round_{round}/{worker}.log",
    benchmark:
        "benchmarks/tune_round/{backbone}/{feature}/round_{round}/{worker}.tsv"
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
        round=get_round_block,
        defaults=get_round_defaults,
        inherited=get_inherited,
        pruner=get_round_pruner,
        settings=get_model_settings,
        workers=TUNING["workers"],
        journal=get_round_journal,
    script:
        "../workflow_scripts/tune_round.py"


checkpoint collect_round:
    input:
        get_round_worker_notes,
    output:
        best=f"{plan.TUNING_ROUND}/best_trial.json",
        trials=report(
            f"{plan.TUNING_ROUND}/trials.csv",
            category="Tuning",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "table": "trials",
            },
        ),
    log:
        "logs/collect_round/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        round=get_round_block,
        about=RUN_ABOUT,
    script:
        "../workflow_scripts/collect_round.py"


rule plot_tuning_round:
    input:
        # The journal is no rule's output (tune_round gets it as a param); best_trial.json
        # is written by collect_round once every trial of the round is in the journal.
        best=rules.collect_round.output.best,
    output:
        history=report(
            f"{plan.TUNING_ROUND}/plots/optimization_history.png",
            caption="../workflow_scripts/genreflow/report/tuning_history.rst",
            category="Tuning",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "optimisation history",
            },
        ),
        importances=report(
            f"{plan.TUNING_ROUND}/plots/param_importances.png",
            caption="../workflow_scripts/genreflow/report/tuning_importances.rst",
            category="Tuning",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "hyperparameter importances",
            },
        ),
        parallel=report(
            f"{plan.TUNING_ROUND}/plots/parallel_coordinate.png",
            caption="../workflow_scripts/genreflow/report/tuning_parallel.rst",
            category="Tuning",
            subcategory="{backbone} + {feature}",
            labels={
                "model": "{backbone}",
                "feature": "{feature}",
                "round": "{round}",
                "figure": "parallel coordinates",
            },
        ),
    log:
        "logs/plot_tuning_round/{backbone}/{feature}/round_{round}.log",
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        "../envs/tensorflow.yaml"
    params:
        journal=get_round_journal,
        about=get_model_about,
        notes=get_model_notes,
    script:
        "../workflow_scripts/plot_tuning_round.py"
