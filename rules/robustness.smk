# Stage 9, robustness: every final model scored on the test split under fixed, seeded
# perturbations of the test clips (robustness.perturbations) and, on the synthetic corpus,
# under a second rendering of the test songs, each against the same model on the clean
# clips. The conditions' clips go through the main run's own feature and musicnn rules (one
# job per feature or audio backbone for every condition), and one job per chain of rounds
# loads each final model.keras once and feeds it as the bundle does.


localrules:
    robustness,
    collect_robustness_audio,
    summarize_robustness,


rule robustness:
    input:
        f"{plan.ROBUSTNESS}/summary.csv",


# One job per perturbation, given only its own block: changing one perturbation's
# parameters makes only its clips again (then the images and scores, which read them all).
rule perturb_test_clips:
    input:
        clips=rules.collect_corpus.output.clips,
        test=plan.split_manifest("test"),
    output:
        clips=directory(f"{plan.ROBUSTNESS_AUDIO}/clips"),
        table=f"{plan.ROBUSTNESS_AUDIO}/clips.csv",
    log:
        "logs/perturb_test_clips/{condition}.log",
    benchmark:
        "benchmarks/perturb_test_clips/{condition}.tsv"
    wildcard_constraints:
        condition=PERTURBATION_NAMES,
    conda:
        "../envs/perturb.yaml"
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        perturbation=get_perturbation_block,
        seed=ROBUSTNESS["seed"],
        audio=get_audio_settings(),
    script:
        "../workflow_scripts/perturb_test_clips.py"


rule render_test_songs:
    input:
        clips=rules.collect_corpus.output.clips,
        test=plan.split_manifest("test"),
    output:
        clips=directory(f"{SECOND_RENDERING_AUDIO}/clips"),
        table=f"{SECOND_RENDERING_AUDIO}/clips.csv",
    log:
        "logs/render_test_songs/render_test_songs.log",
    conda:
        "../envs/perturb.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        synthetic=synthetic_settings(),
        condition=SECOND_RENDERING,
    script:
        "../workflow_scripts/render_test_songs.py"


rule collect_robustness_audio:
    input:
        get_condition_tables,
    output:
        f"{plan.ROBUSTNESS}/audio/clips.csv",
    log:
        "logs/collect_robustness_audio/collect_robustness_audio.log",
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow_scripts/collect_robustness_audio.py"


use rule make_images as make_robustness_images with:
    input:
        rules.collect_robustness_audio.output[0],
    output:
        images=directory(f"{plan.ROBUSTNESS_FEATURE}/images"),
        index=f"{plan.ROBUSTNESS_FEATURE}/index.csv",
    log:
        "logs/make_robustness_images/{feature}.log",
    benchmark:
        "benchmarks/make_robustness_images/{feature}.tsv"


use rule embed_audio as embed_robustness_audio with:
    input:
        unpack(get_musicnn_checkpoint),
        clips=rules.collect_robustness_audio.output[0],
    output:
        f"{plan.ROBUSTNESS_EMBEDDINGS}/{AUDIO_FEATURE}.npz",
    log:
        "logs/embed_robustness_audio/{backbone}.log",
    benchmark:
        "benchmarks/embed_robustness_audio/{backbone}.tsv"


# One job per chain of rounds: every round's and seed's model.keras in one process, which
# starts TensorFlow once and embeds the test images once per distinct frozen backbone.
rule score_robustness:
    input:
        unpack(get_robustness_model_inputs),
    output:
        predictions=f"{plan.ROBUSTNESS_MODELS}/predictions.csv",
    log:
        "logs/score_robustness/{backbone}/{feature}.log",
    benchmark:
        "benchmarks/score_robustness/{backbone}/{feature}.tsv"
    wildcard_constraints:
        backbone=TUNED_MODELS,
    conda:
        GPU_ENV
    threads: TENSORFLOW_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=60,
    params:
        mixed_precision=config["training"]["mixed_precision"],
        models=get_robustness_chain_models,
        conditions=ROBUSTNESS_CONDITIONS,
        genres=GENRES,
        image_size=config["features"]["image_size"],
    script:
        "../workflow_scripts/score_robustness.py"


rule summarize_robustness:
    input:
        predictions=get_robustness_predictions,
        final_summary=f"{plan.FINAL}/summary.csv",
    output:
        summary=report(
            f"{plan.ROBUSTNESS}/summary.csv",
            caption="../workflow_scripts/genreflow/report/robustness_summary.rst",
            category="Robustness",
            labels={"result": "every final model under every condition (CSV)"},
        ),
        table=report(
            f"{plan.ROBUSTNESS}/table.html",
            caption="../workflow_scripts/genreflow/report/robustness_table.rst",
            category="Robustness",
            labels={"result": "models x conditions (table)"},
        ),
        figure=report(
            f"{plan.ROBUSTNESS}/robustness.png",
            caption="../workflow_scripts/genreflow/report/robustness_figure.rst",
            category="Robustness",
            labels={"result": "models x conditions (figure)"},
        ),
        # the chosen model's worst perturbation, for the report's front page
        headline=ROBUSTNESS_HEADLINE,
    log:
        "logs/summarize_robustness/summarize_robustness.log",
    conda:
        "../envs/tensorflow.yaml"
    params:
        chains=get_robustness_chains,
        conditions=robustness_condition_descriptions(),
        genres=GENRES,
        bootstrap=sorted_block(config["bootstrap"]),
        about=RUN_ABOUT,
        notes=caveats(RUN_ABOUT),
    script:
        "../workflow_scripts/summarize_robustness.py"
