#!/usr/bin/env bash
# Run by Snakemake in the new tensorflow environment: musicnn and tf-keras, for predicting with a
# musicnn bundle (genreflow.predict runs its embedding in a process of its own, with
# TF_USE_LEGACY_KERAS=1), installed without their dependencies as in musicnn.post-deploy.sh.
set -euo pipefail
"${CONDA_PREFIX}/bin/pip" install --no-deps musicnn==0.1.0 tf-keras==2.21.0
