from genreflow.jobs import logged_job
from genreflow.synthetic import write_corpus

settings = snakemake.params.settings
with logged_job(snakemake) as log:
    write_corpus(
        root=snakemake.output[0].split("/genres_original/")[0],
        clips_per_genre=settings["clips_per_genre"],
        seconds=settings["seconds"],
        sample_rate=settings["sample_rate"],
        seed=settings["seed"],
        log=log,
    )
