#!/usr/bin/env bash
# Run by Snakemake in the new musicnn environment: the two packages whose metadata cannot
# be satisfied (see musicnn.yaml), installed without their dependencies.
set -euo pipefail
"${CONDA_PREFIX}/bin/pip" install --no-deps musicnn==0.1.0 tf-keras==2.21.0
