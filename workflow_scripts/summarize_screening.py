from genreflow.jobs import logged_job
from genreflow.screening import summarize_screening

with logged_job(snakemake) as log:
    summarize_screening(
        metrics_jsons=list(snakemake.input.metrics),
        predictions_csvs=list(snakemake.input.predictions),
        about=snakemake.params.about,
        genres=snakemake.params.genres,
        bootstrap=snakemake.params.bootstrap,
        min_f1=snakemake.params.min_f1,
        top_k=snakemake.params.top_k,
        out_summary=snakemake.output.summary,
        out_tables=snakemake.output.tables,
        out_tables_html=snakemake.output.tables_html,
        out_heatmap=snakemake.output.heatmap,
        out_selection=snakemake.output.selection,
        protocol=snakemake.params.protocol,
        log=log,
    )
