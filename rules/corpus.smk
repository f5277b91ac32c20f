# Stage 1, corpus: make or find the clips, then decode and check every one of them.


localrules:
    collect_corpus,


rule make_synthetic_corpus:
    output:
        synthetic_corpus_files(),
    log:
        "logs/make_synthetic_corpus/make_synthetic_corpus.log",
    conda:
        "../envs/audio.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        settings=synthetic_settings(),
    script:
        "../workflow_scripts/make_synthetic_corpus.py"


rule check_clips:
    input:
        get_shard_audio,
    output:
        f"{plan.CORPUS}/checked/{{shard}}.csv",
    log:
        "logs/check_clips/{shard}.log",
    benchmark:
        "benchmarks/check_clips/{shard}.tsv"
    conda:
        "../envs/audio.yaml"
    resources:
        mem_mb=500,
        runtime=30,
    params:
        clips=get_shard_clip_table,
        audio=get_audio_settings(),
        on_bad_file=config["audio"]["on_bad_file"],
    script:
        "../workflow_scripts/check_clips.py"


rule collect_corpus:
    input:
        shard_checks(),
    output:
        clips=f"{plan.CORPUS}/clips.csv",
        rejected=f"{plan.CORPUS}/rejected.csv",
    log:
        "logs/collect_corpus/collect_corpus.log",
    conda:
        "../envs/audio.yaml"
    params:
        not_clips=files_not_clips(),
    script:
        "../workflow_scripts/collect_corpus.py"
