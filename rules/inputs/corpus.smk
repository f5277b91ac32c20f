# What the rules of rules/corpus.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).


def synthetic_corpus_files():
    return [clip.path for clip in CLIPS]


def synthetic_settings():
    return sorted_block(
        {
            **config["dataset"]["synthetic"],
            "sample_rate": config["audio"]["sample_rate"],
        }
    )


def get_shard_audio(wildcards):
    return [clip.path for clip in SHARDS[wildcards.shard]]


def get_shard_clip_table(wildcards):
    return [
        {"clip": clip.clip, "genre": clip.genre, "path": clip.path}
        for clip in SHARDS[wildcards.shard]
    ]


def files_not_clips():
    """Files under the genre folders that are not clips (broken links, other file types):
    collect_corpus lists them in rejected.csv, so that no file goes unmentioned."""
    return sorted(LISTING.not_clips, key=lambda row: row["path"])


def shard_checks():
    return expand(f"{plan.CORPUS}/checked/{{shard}}.csv", shard=sorted(SHARDS))
