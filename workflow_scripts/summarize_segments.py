from genreflow.jobs import logged_job
from genreflow.segments import summarize_segments

with logged_job(snakemake) as log:
    summarize_segments(
        rows=snakemake.params.rows,
        metrics_jsons=list(snakemake.input.metrics),
        predictions_csvs=list(snakemake.input.predictions),
        genres=snakemake.params.genres,
        bootstrap=snakemake.params.bootstrap,
        notes=snakemake.params.notes,
        out_summary=snakemake.output.summary,
        out_table=snakemake.output.table,
        out_table_html=snakemake.output.table_html,
        out_figure=snakemake.output.figure,
        log=log,
    )
