# What the rules of rules/splits.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.names import FAULT_FILTERED
from genreflow.splits import FAULT_FILTERED_LISTS

SPLIT_MANIFESTS = list(plan.split_manifests().values())


def get_split_lists(wildcards):
    """The split lists make_splits reads: none (stratified split), the fetched
    fault-filtered lists, or the user's own."""
    lists = config["splits"]["lists"]
    if lists == FAULT_FILTERED:
        return {split: FAULT_FILTERED_LISTS[split].target for split in SPLITS}
    return {split: lists[split] for split in SPLITS} if lists else {}


def split_list_checksums():
    """The published checksums of the fault-filtered lists, checked by make_splits (a
    list placed by hand is used as it is only if it is the published one)."""
    if config["splits"]["lists"] != FAULT_FILTERED:
        return None
    return {split: FAULT_FILTERED_LISTS[split].sha256 for split in SPLITS}


def split_settings():
    return sorted_block(
        {key: value for key, value in config["splits"].items() if key != "lists"}
    )
