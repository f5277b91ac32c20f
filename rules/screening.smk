# Stage 4, screening: every backbone x feature with a frozen backbone. The backbone's
# pooled output is computed once per (backbone, feature) and cached; the head trains on it.


localrules:
    screening,
    fetch_weights,
    join_audio_embeddings,
    summarize_screening,


rule screening:
    input:
        "results/screening/selection.json",


rule fetch_weights:
    output:
        "resources/weights/{backbone}/imagenet_notop.h5",
    log:
        "logs/fetch_weights/{backbone}.log",
    conda:
        "../envs/tensorflow.yaml"
    script:
        "../workflow_scripts/fetch_weights.py"


rule embed_images:
    input:
        unpack(backbone_weights),
        index="results/features/{feature}/index.csv",
    output:
        "results/embeddings/{backbone}/{feature}.npz",
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
        unpack(musicnn_checkpoint),
        clips="results/corpus/checked/{shard}.csv",
    output:
        "results/embeddings/{backbone}/audio/shards/{shard}.npz",
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
        audio=musicnn_audio_settings(),
        segment_seconds=config["segments"]["seconds"],
        genres=GENRES,
    script:
        "../workflow_scripts/embed_audio.py"


rule join_audio_embeddings:
    input:
        every_shard("results/embeddings/{backbone}/audio/shards/{shard}.npz"),
    output:
        "results/embeddings/{backbone}/audio.npz",
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
        unpack(split_manifest_files),
        embeddings="results/embeddings/{backbone}/{feature}.npz",
    output:
        metrics="results/screening/{backbone}/{feature}/metrics.json",
        history="results/screening/{backbone}/{feature}/history.csv",
        predictions="results/screening/{backbone}/{feature}/predictions.csv",
        folds="results/screening/{backbone}/{feature}/folds.csv",
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
        about=screening_about,
    script:
        "../workflow_scripts/train_screening.py"


checkpoint summarize_screening:
    input:
        metrics=screening_files("metrics.json"),
        predictions=screening_files("predictions.csv"),
    output:
        summary="results/screening/summary.csv",
        tables=report(
            "results/screening/tables.md",
            caption="../workflow_scripts/genreflow/report/screening_tables.rst",
            category="Screening",
            labels={"table": "F1 per backbone and image type"},
        ),
        heatmap=report(
            "results/screening/heatmap.png",
            caption="../workflow_scripts/genreflow/report/screening_heatmap.rst",
            category="Screening",
            labels={"figure": "backbone x image type heatmap"},
        ),
        selection="results/screening/selection.json",
    log:
        "logs/summarize_screening/summarize_screening.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        about=run_about(),
        notes=caveats(run_about()),
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
