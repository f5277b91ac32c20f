from genreflow.jobs import logged_job
from genreflow.names import SPLITS
from genreflow.splits import make_splits

list_paths = {split: snakemake.input[split] for split in SPLITS if split in snakemake.input.keys()}
with logged_job(snakemake) as log:
    make_splits(
        clips_csv=snakemake.input.clips,
        rejected_csv=snakemake.input.rejected,
        settings=snakemake.params.settings,
        list_paths=list_paths or None,
        list_checksums=snakemake.params.list_checksums,
        genres=snakemake.params.genres,
        out={split: snakemake.output[split] for split in SPLITS},
        unmatched_csv=snakemake.output.unmatched,
        log=log,
    )
