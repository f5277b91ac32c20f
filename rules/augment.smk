# Augmented training views (training.augment): each training track also contributes K
# perturbed copies, each drawn from one family. One job per family writes its views' audio
# (changing one family's ranges redraws only its views); the main run's own feature and
# musicnn rules make their images and embeddings, once, as files; the tuning trials and
# final models whose `augment` hyperparameter asks for them read those (rules/common.smk,
# get_model_inputs). Nothing here runs unless some model may train on views.


localrules:
    index_view_images,
    join_view_audio_embeddings,


rule perturb_training_clips:
    input:
        unpack(get_augment_manifests),
        clips=rules.collect_corpus.output.clips,
    output:
        clips=directory(f"{plan.AUGMENT_AUDIO}/clips"),
        table=f"{plan.AUGMENT_AUDIO}/clips.csv",
    log:
        "logs/perturb_training_clips/{family}.log",
    benchmark:
        "benchmarks/perturb_training_clips/{family}.tsv"
    wildcard_constraints:
        family=AUGMENT_FAMILY_NAMES,
    conda:
        "../envs/perturb.yaml"
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        family=get_family_block,
        families=AUGMENT_FAMILIES,
        splits=AUGMENT_SPLITS,
        views=AUGMENT["views"],
        seed=AUGMENT["seed"],
        audio=get_audio_settings(),
    script:
        "../workflow_scripts/perturb_training_clips.py"


use rule make_images as make_view_images with:
    input:
        rules.perturb_training_clips.output.table,
    output:
        images=directory(f"{plan.AUGMENT_FAMILY_FEATURE}/images"),
        index=f"{plan.AUGMENT_FAMILY_FEATURE}/index.csv",
    log:
        "logs/make_view_images/{family}/{feature}.log",
    benchmark:
        "benchmarks/make_view_images/{family}/{feature}.tsv"
    wildcard_constraints:
        family=AUGMENT_FAMILY_NAMES,
        feature=IMAGE_FEATURES,


use rule index_images as index_view_images with:
    input:
        get_every_family(rules.make_view_images.output.index),
    output:
        f"{plan.AUGMENT_FEATURE}/index.csv",
    log:
        "logs/index_view_images/{feature}.log",


use rule embed_images as embed_view_images with:
    input:
        unpack(get_backbone_weights),
        index=rules.index_view_images.output[0],
    output:
        f"{plan.AUGMENT_EMBEDDINGS}/{{feature}}.npz",
    log:
        "logs/embed_view_images/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/embed_view_images/{backbone}/{feature}.tsv"


use rule embed_audio as embed_view_audio with:
    input:
        unpack(get_musicnn_checkpoint),
        clips=rules.perturb_training_clips.output.table,
    output:
        f"{plan.AUGMENT_EMBEDDINGS}/{AUDIO_FEATURE}/views/{{family}}.npz",
    log:
        "logs/embed_view_audio/{backbone}/{family}.log",
    benchmark:
        "benchmarks/embed_view_audio/{backbone}/{family}.tsv"
    wildcard_constraints:
        backbone="|".join(AUDIO_BACKBONES),
        family=AUGMENT_FAMILY_NAMES,


use rule join_audio_embeddings as join_view_audio_embeddings with:
    input:
        get_every_family(rules.embed_view_audio.output[0]),
    output:
        f"{plan.AUGMENT_EMBEDDINGS}/{AUDIO_FEATURE}.npz",
    log:
        "logs/join_view_audio_embeddings/{backbone}.log",
