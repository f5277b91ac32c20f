from genreflow.evaluation.calibration import calibrate_final
from genreflow.jobs import logged_job

with logged_job(snakemake) as log:
    calibrate_final(
        predictions_csv=snakemake.input.predictions,
        genres=snakemake.params.genres,
        bins=snakemake.params.bins,
        about=snakemake.params.about,
        notes=snakemake.params.notes,
        out_calibration=snakemake.output.calibration,
        out_reliability=snakemake.output.reliability,
        log=log,
    )
