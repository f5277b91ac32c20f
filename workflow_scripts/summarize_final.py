from genreflow.evaluation.summary import summarize_final
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    summarize_final(
        metrics_jsons=list(snakemake.input.metrics),
        predictions_csvs=list(snakemake.input.predictions),
        calibration_jsons=list(snakemake.input.calibrations),
        about=snakemake.params.about,
        genres=snakemake.params.genres,
        bootstrap=snakemake.params.bootstrap,
        out_summary=snakemake.output.summary,
        out_table=snakemake.output.table,
        out_table_html=snakemake.output.table_html,
        out_scores=snakemake.output.scores,
        out_headline=snakemake.output.headline,
        log=log,
    )
