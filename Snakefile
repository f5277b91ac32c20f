from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow_scripts/genreflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/features.smk"
include: "rules/splits.smk"
include: "rules/screening.smk"
include: "rules/tuning.smk"
include: "rules/evaluation.smk"
include: "rules/segments.smk"
include: "rules/predict.smk"
include: "rules/robustness.smk"
include: "rules/augment.smk"


rule all:
    input:
        feature_indexes(),
        SPLIT_MANIFESTS,
        rules.screening.input,
        get_final_best_trials,
        rules.final.input,
        rules.segments.input,
        rules.export.input,
        rules.robustness.input,
