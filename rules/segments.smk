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
        images=directory(f"{plan.SEGMENT_FEATURE}/images/{{shard}}"),
        index=f"{plan.SEGMENT_FEATURE}/shards/{{shard}}.csv",
    log:
        "logs/segment_images/{length}/{feature}/{shard}.log",
    benchmark:
        "benchmarks/segment_images/{length}/{feature}/{shard}.tsv"
    params:
        block=get_feature_block,
        audio=get_audio_settings(),
        segment_seconds=get_segment_seconds,
        image_size=config["features"]["image_size"],


use rule index_images as segment_index_images with:
    input:
        get_every_shard(rules.segment_images.output.index),
    output:
        f"{plan.SEGMENT_FEATURE}/index.csv",
    log:
        "logs/segment_index_images/{length}/{feature}.log",


use rule embed_images as segment_embed_images with:
    input:
        unpack(get_backbone_weights),
        index=rules.segment_index_images.output[0],
    output:
        f"{plan.SEGMENT_EMBEDDINGS}/{{feature}}.npz",
    log:
        "logs/segment_embed_images/{length}/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/segment_embed_images/{length}/{backbone}/{feature}.tsv"


use rule embed_audio as segment_embed_audio with:
    output:
        f"{plan.SEGMENT_EMBEDDINGS}/audio/shards/{{shard}}.npz",
    log:
        "logs/segment_embed_audio/{length}/{backbone}/{shard}.log",
    benchmark:
        "benchmarks/segment_embed_audio/{length}/{backbone}/{shard}.tsv"
    params:
        layer=MUSICNN["layer"],
        batch_size=MUSICNN["batch_size"],
        audio=get_musicnn_audio_settings(),
        segment_seconds=get_segment_seconds,
        genres=GENRES,


use rule join_audio_embeddings as segment_join_audio_embeddings with:
    input:
        get_every_shard(rules.segment_embed_audio.output[0]),
    output:
        f"{plan.SEGMENT_EMBEDDINGS}/audio.npz",
    log:
        "logs/segment_join_audio_embeddings/{length}/{backbone}.log",


use rule train_screening as segment_train_screening with:
    input:
        unpack(get_split_manifests),
        embeddings=f"{plan.SEGMENT_EMBEDDINGS}/{{feature}}.npz",
    output:
        metrics=f"{plan.SEGMENT_SCREENED}/metrics.json",
        history=f"{plan.SEGMENT_SCREENED}/history.csv",
        predictions=f"{plan.SEGMENT_SCREENED}/predictions.csv",
        folds=f"{plan.SEGMENT_SCREENED}/folds.csv",
    log:
        "logs/segment_train_screening/{length}/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/segment_train_screening/{length}/{backbone}/{feature}.tsv"


rule summarize_segments:
    input:
        metrics=get_segment_files("metrics.json"),
        predictions=get_segment_files("predictions.csv"),
    output:
        summary=report(
            f"{plan.SEGMENTS}/summary.csv",
            caption="../workflow_scripts/genreflow/report/segments_summary.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (CSV)"},
        ),
        table=f"{plan.SEGMENTS}/comparison.md",
        table_html=report(
            f"{plan.SEGMENTS}/comparison.html",
            caption="../workflow_scripts/genreflow/report/segments_table.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (table)"},
        ),
        figure=report(
            f"{plan.SEGMENTS}/comparison.png",
            caption="../workflow_scripts/genreflow/report/segments_figure.rst",
            category="Segments",
            labels={"result": "whole clips vs segments (figure)"},
        ),
    log:
        "logs/summarize_segments/summarize_segments.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        rows=get_segment_rows,
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
        about=RUN_ABOUT,
        notes=caveats(RUN_ABOUT),
    script:
        "../workflow_scripts/summarize_segments.py"
