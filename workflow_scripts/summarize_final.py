from genreflow.evaluation import summarize_final
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    summarize_final(
        metrics_jsons=list(snakemake.input),
        about=snakemake.params.about,
        out_summary=snakemake.output.summary,
        out_table=snakemake.output.table,
        out_scores=snakemake.output.scores,
        log=log,
    )
