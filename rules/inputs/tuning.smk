# What the rules of rules/tuning.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules). What final models share
# with their rounds (get_model_inputs, get_model_settings, ...) is in rules/common.smk.


def tuning_round(wildcards):
    return tuning_block(wildcards.backbone)["rounds"][int(wildcards.round)]


def previous_best_trial(wildcards):
    n = int(wildcards.round)
    return plan.round_file(
        wildcards.backbone, wildcards.feature, n - 1, "best_trial.json"
    )


def get_round_inputs(wildcards):
    inputs = {
        **plan.split_manifests(),
        **get_model_inputs(wildcards),
        **get_backbone_weights(wildcards),
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


def get_inherited(wildcards):
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


def get_round_block(wildcards):
    return sorted_block(tuning_round(wildcards))


def get_round_defaults(wildcards):
    return sorted_block(tuning_block(wildcards.backbone)["defaults"])


def get_round_pruner(wildcards):
    return sorted_block(tuning_round(wildcards)["pruner"] or TUNING["pruner"])


def get_round_journal(wildcards):
    return plan.round_file(
        wildcards.backbone, wildcards.feature, wildcards.round, "study.journal"
    )


def get_round_worker_notes(wildcards):
    return [
        plan.round_file(
            wildcards.backbone,
            wildcards.feature,
            wildcards.round,
            f"workers/{worker}.json",
        )
        for worker in range(TUNING["workers"])
    ]
