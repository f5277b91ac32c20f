"""How many queue waits does a study cost on Slurm? For a run's job graph (Snakemake's own
`--forceall --dag`), per mode: the number of Slurm submissions and the longest chain of
submissions that wait on one another (each waits in the queue only after the one before
it has ended, so on a busy cluster the chain, not the count, sets how long the study sits
in the queue).

Modes:
- per-job (`--profile profiles/slurm`): every job that is not a local rule is one
  submission, except the profile's `groups:`: connected jobs of one group are one Slurm
  job, and `group-components: N` puts N of those in one submission;
- whole-study (`sbatch profiles/slurm/whole-study.sbatch`): one submission, chain 1, for
  any graph (every job is a job step of the one allocation).

Graphs: `demo` is a finished demo run's folder (`--demo-run`, whose checkpoint outputs
exist, so the graph is whole); `gtzan` is a dry run of `preset=gtzan` on a GTZAN-layout
corpus (`--gtzan-root`; made here, 1000 short silent files, if not given) with
`tuning.combinations` given explicitly (one feature per backbone, as the selection would
choose: which one does not change the graph's shape), since a dry run cannot see past the
screening checkpoint otherwise; its segment screenings, behind that checkpoint too, are
left out (they are beside the tuning chain, not on it).

Usage: python benchmarks/queue_waits.py --demo-run DIR [--gtzan-root DIR] [--queue-days 1]
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GTZAN_COMBINATIONS = ("[{backbone: efficientnetb0, feature: mel}, {backbone: inceptionv3, feature: mel}, "
                      "{backbone: resnet50, feature: mel}, {backbone: vgg16, feature: mel}, "
                      "{backbone: musicnn_msd, feature: audio}, {backbone: musicnn_mtt, feature: audio}]")
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def local_rules() -> set[str]:
    """The workflow's local rules: those in `localrules:` and those without an action."""
    text = "\n".join(path.read_text() for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))])
    local = set()
    for match in re.finditer(r"^localrules:[ \t]*(.*)\n((?:[ \t]+\w+,?[ \t]*\n)*)", text, re.M):
        local.update(re.findall(r"\w+", match.group(1) + match.group(2)))
    for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, re.M):
        if not re.search(r"^[ \t]+(shell|script|run|wrapper|notebook):", body, re.M):
            local.add(name)
    return local


def job_graph(args: list[str], workdir: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """{node: rule}, [(upstream, downstream)] of `snakemake --dag` with `args`."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--configfile", str(REPO / "config.yaml"), "--dag", *args]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"snakemake --dag failed in {workdir}:\n{done.stderr[-4000:]}")
    nodes = {node: label for node, label in re.findall(r'^\s*(\d+)\[label = "([^"\\]+)', done.stdout, re.M)}
    edges = re.findall(r"^\s*(\d+) -> (\d+)", done.stdout, re.M)
    return nodes, edges


def per_job(nodes, edges, local, groups, components):
    """(submissions, longest chain of submissions) in the per-job mode."""
    parent = {node: node for node in nodes}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:  # connected jobs of one group are one Slurm job
        group = groups.get(nodes[a])
        if group is not None and group == groups.get(nodes[b]):
            parent[find(a)] = find(b)
    units = {find(node) for node in nodes if nodes[node] not in local}
    by_group = defaultdict(int)
    count = 0
    for unit in units:
        group = groups.get(nodes[unit])
        if group is None:
            count += 1
        else:
            by_group[group] += 1
    count += sum(math.ceil(n / components.get(group, 1)) for group, n in by_group.items())
    # longest path over the contracted graph, a local job weighing nothing
    successors = defaultdict(set)
    indegree = defaultdict(int)
    vertices = {find(node) for node in nodes}
    for a, b in edges:
        a, b = find(a), find(b)
        if a != b and b not in successors[a]:
            successors[a].add(b)
            indegree[b] += 1
    weight = {v: 0 if nodes[v] in local else 1 for v in vertices}
    best = {v: weight[v] for v in vertices}
    ready = [v for v in vertices if indegree[v] == 0]
    while ready:
        v = ready.pop()
        for w in successors[v]:
            best[w] = max(best[w], best[v] + weight[w])
            indegree[w] -= 1
            if indegree[w] == 0:
                ready.append(w)
    return count, max(best.values())


def gtzan_corpus(root: Path) -> Path:
    import numpy as np
    import soundfile

    for genre in GENRES:
        folder = root / "genres_original" / genre
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(100):
            soundfile.write(folder / f"{genre}.{i:05d}.wav", np.zeros(2205, dtype=np.float32), 22050)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-run", type=Path, required=True, help="a finished demo run's folder")
    parser.add_argument("--gtzan-root", type=Path)
    parser.add_argument("--queue-days", type=float, default=1.0, help="the queue wait per submission")
    args = parser.parse_args()
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    groups, components = profile.get("groups", {}), profile.get("group-components", {})
    local = local_rules()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.gtzan_root or gtzan_corpus(Path(scratch) / "gtzan")
        workdir = Path(scratch) / "gtzan-run"
        workdir.mkdir()
        graphs = {
            "demo": job_graph([], args.demo_run.resolve()),
            "gtzan": job_graph(["--config", "preset=gtzan", f"dataset={{kind: gtzan, root: {root}}}",
                                f"tuning={{combinations: {GTZAN_COMBINATIONS}, baseline: {{feature: mel}}}}"],
                               workdir),
        }
    print(f"| graph | jobs | mode | Slurm submissions | longest chain of submissions | "
          f"queue time of that chain at {args.queue_days:g} day(s) per wait |")
    print("|---|---:|---|---:|---:|---:|")
    for name, (nodes, edges) in graphs.items():
        remote = sum(1 for rule in nodes.values() if rule not in local)
        plain = per_job(nodes, edges, local, {}, {})
        grouped = per_job(nodes, edges, local, groups, components)
        rows = [("per-job, no groups", *plain), ("per-job, profiles/slurm (groups)", *grouped),
                ("whole-study.sbatch", 1, 1)]
        for mode, count, chain in rows:
            print(f"| {name} | {len(nodes)} ({remote} not local) | {mode} | {count} | {chain} | "
                  f"{chain * args.queue_days:g} days |")


if __name__ == "__main__":
    main()
