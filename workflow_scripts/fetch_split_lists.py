from genreflow.jobs import logged_job
from genreflow.splits import FAULT_FILTERED_LISTS, fetch_published_lists

with logged_job(snakemake) as log:
    fetch_published_lists(FAULT_FILTERED_LISTS.values(), log=log)
