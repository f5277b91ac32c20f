# What the rules of rules/evaluation.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).


def get_final_models(wildcards):
    """(backbone, feature, round) of every tuning round of every chain, the baseline
    CNN's included: each round's best configuration becomes a final model."""
    return plan.final_models(get_tuning_pairs(), round_count)


def get_final_files(name):
    """Input function: `name` (metrics.json, predictions.csv, calibration.json, ...) of every
    final model."""

    def files(wildcards):
        return [
            f"{plan.final_folder(backbone, feature, n)}/{name}"
            for backbone, feature, n in get_final_models(wildcards)
        ]

    return files


def get_final_figures(wildcards):
    return [
        f"{plan.final_folder(backbone, feature, n)}/{name}.png"
        for backbone, feature, n in get_final_models(wildcards)
        for name in ("accuracy", "loss", "confusion_matrix")
    ]


def get_tuning_figures(wildcards):
    return [
        plan.round_file(backbone, feature, n, f"plots/{name}.png")
        for backbone, feature, n in get_final_models(wildcards)
        for name in ("optimization_history", "param_importances", "parallel_coordinate")
    ]


def get_final_seed_files(wildcards):
    folder = plan.final_folder(wildcards.backbone, wildcards.feature, wildcards.round)
    return {
        name: plan.seed_files(folder, EVALUATION["seeds"], filename)
        for name, filename in (
            ("metrics", "metrics.json"),
            ("predictions", "predictions.csv"),
            ("history", "history.csv"),
        )
    }


def get_final_seed_models(wildcards):
    """Every seed's model, metrics and predictions of a final model: fit_unfamiliarity
    takes the seed that is exported (the best validation macro-F1)."""
    folder = plan.final_folder(wildcards.backbone, wildcards.feature, wildcards.round)
    return {
        name: plan.seed_files(folder, EVALUATION["seeds"], filename)
        for name, filename in (
            ("models", "model.keras"),
            ("metrics", "metrics.json"),
            ("predictions", "predictions.csv"),
        )
    }


def final_training():
    return sorted_block({key: EVALUATION[key] for key in ("epochs", "patience")})
