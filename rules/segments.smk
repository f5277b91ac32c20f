# Stage 7, segments: whole clips vs segments of each length in segments.compare, for every
# selected (backbone, feature), with screening's head, split and seed. The stages' own
# rules are reused with paths under results/segments/{length}/; the length the main run
# already uses is not computed again (its screening results are the comparison's row).


localrules:
    segments,
    segment_index_images,
    segment_join_audio_embeddings,
    summarize_segments,


rule segments:
    input:
        segment_targets(),


use rule make_images as segment_images with:
    output:
        images=directory("results/segments/{length}/features/{feature}/images/{shard}"),
        index="results/segments/{length}/features/{feature}/shards/{shard}.csv",
    log:
        "logs/segment_images/{length}/{feature}/{shard}.log",
    benchmark:
        "benchmarks/segment_images/{length}/{feature}/{shard}.tsv"
    params:
        block=feature_block,
        audio=audio_settings(),
        segment_seconds=segment_seconds,
        image_size=config["features"]["image_size"],


use rule index_images as segment_index_images with:
    input:
        every_shard("results/segments/{length}/features/{feature}/shards/{shard}.csv"),
    output:
        "results/segments/{length}/features/{feature}/index.csv",
    log:
        "logs/segment_index_images/{length}/{feature}.log",


use rule embed_images as segment_embed_images with:
    input:
        unpack(backbone_weights),
        index="results/segments/{length}/features/{feature}/index.csv",
    output:
        "results/segments/{length}/embeddings/{backbone}/{feature}.npz",
    log:
        "logs/segment_embed_images/{length}/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/segment_embed_images/{length}/{backbone}/{feature}.tsv"


use rule embed_audio as segment_embed_audio with:
    output:
        "results/segments/{length}/embeddings/{backbone}/audio/shards/{shard}.npz",
    log:
        "logs/segment_embed_audio/{length}/{backbone}/{shard}.log",
    benchmark:
        "benchmarks/segment_embed_audio/{length}/{backbone}/{shard}.tsv"
    params:
        layer=MUSICNN["layer"],
        batch_size=MUSICNN["batch_size"],
        audio=musicnn_audio_settings(),
        segment_seconds=segment_seconds,
        genres=GENRES,


use rule join_audio_embeddings as segment_join_audio_embeddings with:
    input:
        every_shard(
            "results/segments/{length}/embeddings/{backbone}/audio/shards/{shard}.npz"
        ),
    output:
        "results/segments/{length}/embeddings/{backbone}/audio.npz",
    log:
        "logs/segment_join_audio_embeddings/{length}/{backbone}.log",


use rule train_screening as segment_train_screening with:
    input:
        unpack(split_manifest_files),
        embeddings="results/segments/{length}/embeddings/{backbone}/{feature}.npz",
    output:
        metrics="results/segments/{length}/screening/{backbone}/{feature}/metrics.json",
        history="results/segments/{length}/screening/{backbone}/{feature}/history.csv",
        predictions="results/segments/{length}/screening/{backbone}/{feature}/predictions.csv",
        folds="results/segments/{length}/screening/{backbone}/{feature}/folds.csv",
    log:
        "logs/segment_train_screening/{length}/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/segment_train_screening/{length}/{backbone}/{feature}.tsv"


rule summarize_segments:
    input:
        metrics=segment_files("metrics.json"),
        predictions=segment_files("predictions.csv"),
    output:
        summary=report(
            "results/segments/summary.csv",
            caption="../workflow_scripts/genreflow/report/segments_summary.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (CSV)"},
        ),
        table=report(
            "results/segments/comparison.md",
            caption="../workflow_scripts/genreflow/report/segments_table.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (table)"},
        ),
        figure=report(
            "results/segments/comparison.png",
            caption="../workflow_scripts/genreflow/report/segments_figure.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (figure)"},
        ),
    log:
        "logs/summarize_segments/summarize_segments.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        rows=segment_rows,
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
        about=run_about(),
        notes=caveats(run_about()),
    script:
        "../workflow_scripts/summarize_segments.py"
