# What the rules of rules/augment.smk read and are given: their input functions and values
# (the linter keeps functions out of files with rules).

AUGMENT = config["training"]["augment"]
AUGMENT_FAMILIES = list(AUGMENT["families"])
# perturb_training_clips' wildcard: a configured family; with none, a pattern that matches
# nothing.
AUGMENT_FAMILY_NAMES = "|".join(AUGMENT_FAMILIES) or "(?!)"
# The splits whose tracks get views (the validation split too under tuning.cv_folds > 1).
AUGMENT_SPLITS = plan.augment_splits(TUNING["cv_folds"])


def get_family_block(wildcards):
    return sorted_block(AUGMENT["families"][wildcards.family])


def get_augment_manifests(wildcards):
    return {split: plan.split_manifest(split) for split in AUGMENT_SPLITS}


def get_every_family(pattern):
    """Input function: `pattern` expanded over every family, with the job's own wildcards
    (the joins of the per-family view jobs, as get_every_shard joins the shards')."""

    def files(wildcards):
        return expand(pattern, family=AUGMENT_FAMILIES, **dict(wildcards.items()))

    return files
