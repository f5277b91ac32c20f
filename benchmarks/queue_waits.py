"""How many Slurm submissions a study makes, and how many of them wait on one another, per
way of running it on Slurm (issue 25).

    .venv/bin/python benchmarks/queue_waits.py [--gtzan-root DIR] [--wait-days 1]

For the demo config (config.yaml) and `--config preset=gtzan` (a GTZAN-layout corpus: the
one given, else 1000 short silent files made here), from the job graph of a dry run
(`snakemake -n --dag`):

- every job its own submission (the per-job profile without its groups);
- the per-job profile (profiles/slurm/config.yaml): its `groups:` join connected jobs of
  one group into one submission, `group-components: N` packs N such pieces into one;
- profiles/slurm/whole-study.sbatch: one submission.

Local rules (summaries, plots, fetching weights) run on the submitting node: they are no
submission and no queue wait. A chain of submissions each waiting for the one before waits
in the queue once per link, so the longest chain times the queue wait is the least time the
study spends queued. Jobs behind a checkpoint (summarize_screening, collect_round,
summarize_final) enter the graph only when it has run: before a run the figures count the
jobs up to screening; `--finished DIR` (a finished run's working directory) counts its whole
graph, tuning rounds and final models included.
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import subprocess
import sys
import tempfile
import wave
from collections import defaultdict
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_gtzan(root: Path, clips_per_genre: int = 100) -> Path:
    """GTZAN's layout (genres_original/<genre>/<genre>.000NN.wav), 0.1 s of silence each:
    a dry run reads only names."""
    for genre in GENRES:
        folder = root / "genres_original" / genre
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(clips_per_genre):
            with wave.open(str(folder / f"{genre}.{number:05d}.wav"), "wb") as clip:
                clip.setnchannels(1)
                clip.setsampwidth(2)
                clip.setframerate(22050)
                clip.writeframes(b"\0\0" * 2205)
    return root


def local_rules() -> set[str]:
    """Rules that never become a submission: `localrules:` and rules without an action."""
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))])
    local = set()
    for match in re.finditer(r"^localrules:[ \t]*(.*)\n((?:[ \t]+\w+,?[ \t]*\n)*)", text, re.M):
        local.update(re.findall(r"\w+", match.group(1) + match.group(2)))
    for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, re.M):
        if not re.search(r"^[ \t]+(shell|script|run|wrapper|notebook|cwl|template_engine):", body, re.M):
            local.add(name)
    return local


def job_graph(extra: list[str], workdir: Path = REPO) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Job id -> rule, and the edges (needed, needing) of `snakemake -n --dag`."""
    command = [sys.executable, "-m", "snakemake", "-n", "--dag", "--quiet", "all",
               "--snakefile", str(REPO / "Snakefile"), *extra]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    nodes = {n: label.split("\\n")[0] for n, label in re.findall(r'^\s*(\d+)\[label = "([^"]*)"', done.stdout, re.M)}
    edges = re.findall(r"^\s*(\d+) -> (\d+)", done.stdout, re.M)
    if not nodes:
        raise SystemExit(f"no jobs in the --dag output of {' '.join(command)}")
    return nodes, edges


def submissions(nodes, edges, local, groups=None, components=None) -> tuple[int, int]:
    """(submissions, longest chain of submissions) when jobs of `groups` (rule -> group)
    that are connected through jobs of that group share one submission."""
    groups, components = groups or {}, components or {}
    # union-find over edges inside one group
    parent = {n: n for n in nodes}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        group = groups.get(nodes[a])
        if group and group == groups.get(nodes[b]):
            parent[find(a)] = find(b)
    unit = {n: find(n) for n in nodes}  # a submission (before group-components packing)
    remote_units = {unit[n] for n in nodes if nodes[n] not in local}
    per_group = defaultdict(int)
    for u in remote_units:
        per_group[groups.get(nodes[u])] += 1
    count = sum(
        math.ceil(k / components.get(group, 1)) if group else k for group, k in per_group.items()
    )
    # longest chain: submissions along a path, local jobs adding none
    after = defaultdict(set)
    for a, b in edges:
        if unit[a] != unit[b]:
            after[unit[a]].add(unit[b])
    units = set(unit.values())
    indegree = {u: 0 for u in units}
    for u in units:
        for v in after[u]:
            indegree[v] += 1
    order = [u for u in units if indegree[u] == 0]
    depth = {u: int(u in remote_units) for u in units}
    for u in order:  # Kahn's order, extended as it goes
        for v in after[u]:
            depth[v] = max(depth[v], depth[u] + int(v in remote_units))
            indegree[v] -= 1
            if indegree[v] == 0:
                order.append(v)
    return count, max(depth.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gtzan-root", type=Path, help="a GTZAN-layout corpus (default: 1000 silent files made here)")
    parser.add_argument("--finished", type=Path, action="append", default=[],
                        help="the working directory of a finished run: its whole graph, past the checkpoints (--forceall)")
    parser.add_argument("--wait-days", type=float, default=1.0, help="queue wait per submission (days)")
    args = parser.parse_args()
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    local = local_rules()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.gtzan_root or make_gtzan(Path(scratch) / "gtzan")
        studies = {
            "demo (config.yaml)": ([], REPO),
            f"preset=gtzan ({'given' if args.gtzan_root else '1000 silent files'})":
                (["--config", "preset=gtzan", f"dataset={{kind: gtzan, root: {root}}}"], REPO),
            **{f"finished run {d}, whole graph": (["--forceall"], d) for d in args.finished},
        }
        print(f"# {date.today()}, {platform.machine()}, Python {platform.python_version()}, "
              f"queue wait {args.wait_days:g} day(s) per submission")
        print("| study | mode | jobs (remote) | submissions | longest chain | least time queued |")
        print("|---|---|---|---|---|---|")
        for study, (extra, workdir) in studies.items():
            nodes, edges = job_graph(extra, workdir)
            remote = sum(rule not in local for rule in nodes.values())
            modes = {
                "every job its own submission": submissions(nodes, edges, local),
                "per-job profile (its groups)": submissions(
                    nodes, edges, local, profile.get("groups"), profile.get("group-components")),
                "whole-study.sbatch": (1, 1),
            }
            for mode, (count, chain) in modes.items():
                print(f"| {study} | {mode} | {len(nodes)} ({remote}) | {count} | {chain} | "
                      f"{chain * args.wait_days:g} days |")


if __name__ == "__main__":
    main()
