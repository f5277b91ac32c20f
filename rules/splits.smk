# Stage 3, splits: track-level manifests; images are never copied into split folders.


localrules:
    fetch_split_lists,
    make_splits,


# splits.lists: fault_filtered. Local, like fetch_weights: it needs internet, which compute
# nodes may lack; lists already there with the published checksum are kept as they are.
rule fetch_split_lists:
    output:
        [FAULT_FILTERED_LISTS[split].target for split in SPLITS],
    log:
        "logs/fetch_split_lists/fetch_split_lists.log",
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow_scripts/fetch_split_lists.py"


rule make_splits:
    input:
        unpack(get_split_lists),
        clips=rules.collect_corpus.output.clips,
        rejected=rules.collect_corpus.output.rejected,
    output:
        train=plan.split_manifest("train"),
        valid=plan.split_manifest("valid"),
        test=plan.split_manifest("test"),
        unmatched=f"{plan.SPLITS_FOLDER}/unmatched_list_entries.csv",
    log:
        "logs/make_splits/make_splits.log",
    conda:
        "../envs/audio.yaml"
    params:
        settings=split_settings(),
        list_checksums=split_list_checksums(),
        genres=GENRES,
    script:
        "../workflow_scripts/make_splits.py"
