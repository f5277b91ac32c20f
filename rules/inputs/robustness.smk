# What the rules of rules/robustness.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.names import SECOND_RENDERING
from genreflow.robustness.perturb import describe as describe_perturbation

ROBUSTNESS = config["robustness"]
PERTURBATIONS = ROBUSTNESS["perturbations"]
# Every condition besides the clean test split, in table order.
ROBUSTNESS_CONDITIONS = plan.robustness_conditions(
    list(PERTURBATIONS), ROBUSTNESS["second_rendering"], config["dataset"]["kind"]
)
# perturb_test_clips' wildcard: a configured perturbation (never the second rendering);
# with none configured, a pattern that matches nothing.
PERTURBATION_NAMES = "|".join(PERTURBATIONS) or "(?!)"
SECOND_RENDERING_AUDIO = plan.ROBUSTNESS_AUDIO.format(condition=SECOND_RENDERING)


def get_perturbation_block(wildcards):
    return sorted_block(PERTURBATIONS[wildcards.condition])


def get_condition_tables(wildcards):
    return [
        plan.robustness_audio_table(condition) for condition in ROBUSTNESS_CONDITIONS
    ]


def get_robustness_chain_models(wildcards):
    """{round, seed} of every final model of a chain, in the order of its model files."""
    return [
        {"round": n, "seed": seed}
        for n in range(round_count(wildcards.backbone))
        for seed in EVALUATION["seeds"]
    ]


def get_robustness_model_inputs(wildcards):
    """Every final model.keras of a chain (get_robustness_chain_models' order), the test
    split, and the clean and the conditions' inputs of its (backbone, feature)
    (genreflow.plan.robustness_inputs)."""
    return {
        "models": [
            plan.seed_files(
                plan.final_folder(
                    wildcards.backbone, wildcards.feature, model["round"]
                ),
                [model["seed"]],
                "model.keras",
            )[0]
            for model in get_robustness_chain_models(wildcards)
        ],
        "test": plan.split_manifest("test"),
        **plan.robustness_inputs(wildcards.backbone, wildcards.feature),
    }


def get_robustness_predictions(wildcards):
    """The predictions file of every chain (get_tuning_pairs' order)."""
    return [
        plan.robustness_predictions(backbone, feature)
        for backbone, feature in get_tuning_pairs()
    ]


def get_robustness_chains(wildcards):
    """(backbone, feature) of every chain, in get_robustness_predictions' order."""
    return [list(pair) for pair in get_tuning_pairs()]


def robustness_condition_descriptions():
    from genreflow.robustness.summary import SECOND_RENDERING_DESCRIPTION

    described = [
        {"name": name, "description": describe_perturbation(PERTURBATIONS[name])}
        for name in PERTURBATIONS
    ]
    if SECOND_RENDERING in ROBUSTNESS_CONDITIONS:
        described.append(
            {"name": SECOND_RENDERING, "description": SECOND_RENDERING_DESCRIPTION}
        )
    return described
