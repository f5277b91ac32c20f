from genreflow.jobs import logged_job
from genreflow.predict.export import export_bundle

with logged_job(snakemake) as log:
    export_bundle(
        metrics_jsons=list(snakemake.input.metrics),
        model_kerases=list(snakemake.input.models),
        calibration_json=snakemake.input.calibration,
        unfamiliarity_npz=snakemake.input.unfamiliarity,
        unfamiliarity_json=snakemake.input.unfamiliarity_summary,
        settings=snakemake.params.settings,
        out_model=snakemake.output.model,
        out_unfamiliarity=snakemake.output.unfamiliarity,
        out_preprocessing=snakemake.output.preprocessing,
        out_readme=snakemake.output.readme,
        log=log,
    )
