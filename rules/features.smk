# Stage 2, features: five images per clip (or segment), a shard of clips per job. Each
# job gets only its own feature's parameter block, so changing one block reruns only that
# feature's jobs.


localrules:
    index_images,


rule make_images:
    input:
        "results/corpus/checked/{shard}.csv",
    output:
        images=directory("results/features/{feature}/images/{shard}"),
        index="results/features/{feature}/shards/{shard}.csv",
    log:
        "logs/make_images/{feature}/{shard}.log",
    benchmark:
        "benchmarks/make_images/{feature}/{shard}.tsv"
    wildcard_constraints:
        feature=IMAGE_FEATURES,
    conda:
        "../envs/audio.yaml"
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        block=feature_block,
        audio=audio_settings(),
        segment_seconds=config["segments"]["seconds"],
        image_size=config["features"]["image_size"],
    script:
        "../workflow_scripts/make_images.py"


rule index_images:
    input:
        every_shard("results/features/{feature}/shards/{shard}.csv"),
    output:
        "results/features/{feature}/index.csv",
    log:
        "logs/index_images/{feature}.log",
    wildcard_constraints:
        feature=IMAGE_FEATURES,
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow_scripts/index_images.py"
