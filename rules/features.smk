# Stage 2, features: five images per clip (or segment), a shard of clips per job. Each
# job gets only its own feature's parameter block, so changing one block reruns only that
# feature's jobs.


localrules:
    index_images,


rule make_images:
    input:
        rules.check_clips.output[0],
    output:
        images=directory(f"{plan.FEATURE}/images/{{shard}}"),
        index=f"{plan.FEATURE}/shards/{{shard}}.csv",
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
        block=get_feature_block,
        audio=get_audio_settings(),
        segment_seconds=config["segments"]["seconds"],
        image_size=config["features"]["image_size"],
    script:
        "../workflow_scripts/make_images.py"


rule index_images:
    input:
        get_every_shard(rules.make_images.output.index),
    output:
        f"{plan.FEATURE}/index.csv",
    log:
        "logs/index_images/{feature}.log",
    wildcard_constraints:
        feature=IMAGE_FEATURES,
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow_scripts/index_images.py"
