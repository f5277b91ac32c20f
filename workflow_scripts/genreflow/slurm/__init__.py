"""The whole study inside one Slurm allocation (`profiles/slurm/whole-study.sbatch`).

- `step`: one Snakemake job of the allocation as a Slurm job step (srun) with its own CPUs,
  memory and GPUs; the allocation's Snakemake calls it through its cluster-sync executor.
"""
