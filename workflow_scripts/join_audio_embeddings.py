from genreflow.audio_embeddings import join_embeddings
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    join_embeddings(list(snakemake.input), snakemake.output[0], log=log)
