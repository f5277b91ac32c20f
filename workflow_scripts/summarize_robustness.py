from genreflow.jobs import logged_job
from genreflow.robustness.summary import summarize_robustness

with logged_job(snakemake) as log:
    summarize_robustness(
        predictions_csvs=list(snakemake.input.predictions),
        chains=snakemake.params.chains,
        final_summary_csv=snakemake.input.final_summary,
        conditions=snakemake.params.conditions,
        genres=snakemake.params.genres,
        bootstrap=snakemake.params.bootstrap,
        about=snakemake.params.about,
        out_summary=snakemake.output.summary,
        out_table=snakemake.output.table,
        out_figure=snakemake.output.figure,
        out_headline=snakemake.output.headline,
        log=log,
    )
