# Stage 4, screening: every backbone x feature with a frozen backbone. The backbone's
# pooled output is computed once per (backbone, feature) and cached; the head trains on it.


localrules:
    screening,
    fetch_weights,
    join_audio_embeddings,
    summarize_screening,


rule screening:
    input:
        f"{plan.SCREENING}/selection.json",


rule fetch_weights:
    output:
        plan.IMAGENET_WEIGHTS,
    log:
        "logs/fetch_weights/{backbone}.log",
    conda:
        "../envs/tensorflow.yaml"
    script:
        "../workflow_scripts/fetch_weights.py"


rule embed_images:
    input:
        unpack(get_backbone_weights),
        index=rules.index_images.output[0],
    output:
        f"{plan.EMBEDDINGS}/{{feature}}.npz",
    log:
        "logs/embed_images/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/embed_images/{backbone}/{feature}.tsv"
    wildcard_constraints:
        backbone="|".join(IMAGE_BACKBONES),
        feature=IMAGE_FEATURES,
    conda:
        GPU_ENV
    threads: TENSORFLOW_THREADS
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        mixed_precision=config["training"]["mixed_precision"],
        image_size=config["features"]["image_size"],
        weights=config["backbones"]["weights"],
        genres=GENRES,
        batch_size=config["screening"]["embedding_batch_size"],
        # seeds a randomly initialised backbone: the same network in every run and length
        seed=config["screening"]["seed"],
    script:
        "../workflow_scripts/embed_images.py"


# musicnn is TF1 graph code on legacy tf-keras: its own environment and process, a shard
# of clips per job like the image jobs. The job verifies the restored weights.
rule embed_audio:
    input:
        unpack(get_musicnn_checkpoint),
        clips=rules.check_clips.output[0],
    output:
        f"{plan.EMBEDDINGS}/audio/shards/{{shard}}.npz",
    log:
        "logs/embed_audio/{backbone}/{shard}.log",
    benchmark:
        "benchmarks/embed_audio/{backbone}/{shard}.tsv"
    wildcard_constraints:
        backbone="|".join(AUDIO_BACKBONES),
    conda:
        "../envs/musicnn.yaml"
    threads: TENSORFLOW_THREADS
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        layer=MUSICNN["layer"],
        batch_size=MUSICNN["batch_size"],
        audio=get_musicnn_audio_settings(),
        segment_seconds=config["segments"]["seconds"],
        genres=GENRES,
    script:
        "../workflow_scripts/embed_audio.py"


rule join_audio_embeddings:
    input:
        get_every_shard(rules.embed_audio.output[0]),
    output:
        f"{plan.EMBEDDINGS}/audio.npz",
    log:
        "logs/join_audio_embeddings/{backbone}.log",
    wildcard_constraints:
        backbone="|".join(AUDIO_BACKBONES),
    conda:
        "../envs/musicnn.yaml"
    script:
        "../workflow_scripts/join_audio_embeddings.py"


rule train_screening:
    input:
        unpack(get_split_manifests),
        embeddings=f"{plan.EMBEDDINGS}/{{feature}}.npz",
    output:
        metrics=f"{plan.SCREENED}/metrics.json",
        history=f"{plan.SCREENED}/history.csv",
        predictions=f"{plan.SCREENED}/predictions.csv",
        folds=f"{plan.SCREENED}/folds.csv",
    log:
        "logs/train_screening/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/train_screening/{backbone}/{feature}.tsv"
    conda:
        "../envs/tensorflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        mixed_precision=config["training"]["mixed_precision"],
        head=sorted_block(config["screening"]["head"]),
        training=screening_training(),
        genres=GENRES,
        about=get_screening_about,
    script:
        "../workflow_scripts/train_screening.py"


checkpoint summarize_screening:
    input:
        metrics=screening_files("metrics.json"),
        predictions=screening_files("predictions.csv"),
    output:
        summary=f"{plan.SCREENING}/summary.csv",
        tables=f"{plan.SCREENING}/tables.md",
        tables_html=report(
            f"{plan.SCREENING}/tables.html",
            caption="../workflow_scripts/genreflow/report/screening_tables.rst",
            category="Screening",
            labels={"table": "F1 per backbone and image type"},
        ),
        heatmap=report(
            f"{plan.SCREENING}/heatmap.png",
            caption="../workflow_scripts/genreflow/report/screening_heatmap.rst",
            category="Screening",
            labels={"figure": "backbone x image type heatmap"},
        ),
        selection=f"{plan.SCREENING}/selection.json",
    log:
        "logs/summarize_screening/summarize_screening.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        about=RUN_ABOUT,
        notes=caveats(RUN_ABOUT),
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
        protocol={
            "requested": config["screening"]["protocol"],
            "used": screening_protocol(),
        },
        min_f1=config["screening"]["min_f1"],
        top_k=config["screening"]["top_k"],
    script:
        "../workflow_scripts/summarize_screening.py"
