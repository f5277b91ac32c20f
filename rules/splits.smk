# Stage 3, splits: track-level manifests; images are never copied into split folders.


localrules:
    make_splits,


rule make_splits:
    input:
        unpack(split_list_files),
        clips="results/corpus/clips.csv",
        rejected="results/corpus/rejected.csv",
    output:
        train="results/splits/train.csv",
        valid="results/splits/valid.csv",
        test="results/splits/test.csv",
        unmatched="results/splits/unmatched_list_entries.csv",
    log:
        "logs/make_splits/make_splits.log",
    conda:
        "../envs/audio.yaml"
    params:
        settings=split_settings(),
    script:
        "../workflow_scripts/make_splits.py"
