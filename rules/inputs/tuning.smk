# What the rules of rules/tuning.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.run_info import final_about


def tuning_block(backbone):
    """The tuning settings of a model: the baseline CNN has its own rounds and defaults."""
    return TUNING["baseline"] if backbone == BASELINE else TUNING


def tuning_rounds(backbone):
    return len(tuning_block(backbone)["rounds"])


def tuning_round(wildcards):
    return tuning_block(wildcards.backbone)["rounds"][int(wildcards.round)]


def tuning_combinations():
    """(backbone, feature) of every chain of rounds, the baseline CNN's included."""
    if TUNING["combinations"] == "selection":
        chosen = screening_selection()
    else:
        chosen = [(c["backbone"], c["feature"]) for c in TUNING["combinations"]]
    try:
        return plan.tuning_pairs(chosen, TUNING["baseline"])
    except plan.PlanError as error:
        raise WorkflowError(str(error)) from None


def final_best_trials(wildcards):
    """best_trial.json of the last round of every chain."""
    return [
        plan.round_file(
            backbone, feature, tuning_rounds(backbone) - 1, "best_trial.json"
        )
        for backbone, feature in tuning_combinations()
    ]


def previous_best_trial(wildcards):
    n = int(wildcards.round)
    return plan.round_file(
        wildcards.backbone, wildcards.feature, n - 1, "best_trial.json"
    )


def model_data(wildcards):
    """What a model of (backbone, feature) reads besides the splits (plan.model_inputs)."""
    return plan.model_inputs(wildcards.backbone, wildcards.feature)


def tuning_round_inputs(wildcards):
    inputs = {
        **plan.split_manifests(),
        **model_data(wildcards),
        **backbone_weights(wildcards),
    }
    n = int(wildcards.round)
    if n > 0:
        # collect_round is a checkpoint: once the previous round is collected this job is
        # planned again, and its params read the new best_trial.json. ancient(): a rewrite
        # with the same inherited values reruns nothing.
        checkpoints.collect_round.get(
            backbone=wildcards.backbone, feature=wildcards.feature, round=str(n - 1)
        )
        inputs["previous"] = ancient(previous_best_trial(wildcards))
    return inputs


def tuning_inherited(wildcards):
    """The inherited values, from the previous round's best_trial.json; they are params,
    so that a change of value reruns this round (and a same-content rewrite does not).
    """
    names = tuning_round(wildcards)["inherit"]
    if not names:
        return {}
    path = previous_best_trial(wildcards)
    if not os.path.exists(path):
        # Only while the previous round is still to run: the job is planned again then.
        return {"pending": path}
    params = read_json(path)["params"]
    return sorted_block({name: params.get(name) for name in names})


def tuning_round_block(wildcards):
    return sorted_block(tuning_round(wildcards))


def tuning_defaults(wildcards):
    return sorted_block(tuning_block(wildcards.backbone)["defaults"])


def tuning_pruner(wildcards):
    return sorted_block(tuning_round(wildcards)["pruner"] or TUNING["pruner"])


def tuning_settings(wildcards):
    """What a model of (backbone, feature) is built and trained with besides its
    hyperparameters; final models get the same, so they are built as their trials were.
    """
    settings = {
        "genres": GENRES,
        "image_size": config["features"]["image_size"],
        "patience": TUNING["patience"],
        "cv_folds": TUNING["cv_folds"],
    }
    if wildcards.backbone != BASELINE:
        settings["weights"] = config["backbones"]["weights"]
        # a randomly initialised backbone is the network of the embedding cache
        settings["backbone_seed"] = config["screening"]["seed"]
        settings["activation_storage"] = config["training"]["activation_storage"]
    return sorted_block(settings)


def tuning_journal(wildcards):
    return plan.round_file(
        wildcards.backbone, wildcards.feature, wildcards.round, "study.journal"
    )


def model_about(wildcards):
    """What the (backbone, feature, round) model of a job is (genreflow.run_info.final_about):
    for its tuning plots, its final models and its bundle."""
    return final_about(
        run_about(), wildcards.backbone, wildcards.feature, int(wildcards.round)
    )


def model_notes(wildcards):
    """The caveats, in genreflow.run_info.caveats' words, for the report captions."""
    return caveats(model_about(wildcards))


def tuning_worker_notes(wildcards):
    return [
        plan.round_file(
            wildcards.backbone,
            wildcards.feature,
            wildcards.round,
            f"workers/{worker}.json",
        )
        for worker in range(TUNING["workers"])
    ]
