#!/usr/bin/env bash
# stop-local-slurm.sh [--purge] -- stop the daemons started by start-local-slurm.sh, by the
# PIDs in their pidfiles (each checked against the expected program name first).
# --purge also removes the config, state and logs it created.
set -uo pipefail
PURGE=0; [ "${1:-}" = --purge ] && PURGE=1
log() { printf '[local-slurm %s] %s\n' "$(date +%T)" "$*"; }

stop_pidfile() { # stop_pidfile <pidfile> <expected comm>
  local f=$1 comm=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then log "$comm ($pid) ignored TERM, sending KILL"; kill -KILL "$pid"; fi
    log "stopped $comm (pid $pid)"
  fi
  rm -f "$f"
}

# cancel whatever is still queued/running on this private test cluster
if command -v squeue >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP"; then
  ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    log "cancelling jobs: $ids"; scancel $ids
    for _ in $(seq 1 40); do [ -z "$(squeue -h -t PD,R,CG -o %i 2>/dev/null)" ] && break; sleep 0.25; done
  fi
fi

stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/munge/munged.pid munged

if [ "$PURGE" = 1 ]; then
  rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/lib/slurm/fake-gpus
  rm -f /var/log/slurm/*.log
  log "purged config, state and logs"
fi
