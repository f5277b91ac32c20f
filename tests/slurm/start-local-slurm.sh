#!/usr/bin/env bash
# start-local-slurm.sh -- install, configure and start a single-node Slurm cluster on localhost
# for tests/test_slurm.py (Debian/Ubuntu, root, no systemd or cgroups needed). Tested with
# Debian 12's slurm-wlm 22.05.8 and munge 0.5.15. Safe to run again: daemons that are already
# up are kept unless the configuration it writes has changed.
#
# The node advertises more CPUs and memory than the machine has (config_overrides), at least
# the largest request of any rule (a group job asks for the sum of its parallel members), and
# fake GPUs (null character devices) so that `gpu: 1` jobs are schedulable and get a
# CUDA_VISIBLE_DEVICES.
#
# Environment knobs:
#   LOCAL_SLURM_CPUS=N          CPUs advertised for the node                      [16]
#   LOCAL_SLURM_MEM_MB=N        RealMemory advertised for the node (MB)           [32000]
#   LOCAL_SLURM_FAKE_GPUS=N     fake GPUs (gres gpu:fake:N); 0 = none              [2]
#   LOCAL_SLURM_SKIP_INSTALL=1  skip apt-get                                      [0]
#   LOCAL_SLURM_LOG=path        copy of this script's output                     [/tmp/local-slurm-start.log]
set -euo pipefail

CPUS=${LOCAL_SLURM_CPUS:-16}
MEM_MB=${LOCAL_SLURM_MEM_MB:-32000}
FAKE_GPUS=${LOCAL_SLURM_FAKE_GPUS:-2}
START_LOG=${LOCAL_SLURM_LOG:-/tmp/local-slurm-start.log}
CLUSTER=localcluster   # tests/test_slurm.py only runs against a cluster of this name
NODE=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)

exec > >(tee "$START_LOG") 2>&1
log() { printf '[local-slurm %s] %s\n' "$(date +%T)" "$*"; }
die() {
  log "ERROR: $*"
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
    if [ -f "$f" ]; then echo "--- tail $f"; tail -n 20 "$f"; fi
  done
  exit 1
}
wait_for() { # wait_for <seconds> <description> <command...>
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && die "timed out after ${t}s waiting for $what"
    sleep 0.25
  done
}
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pidfile() { # stop_pidfile <pidfile> <expected comm>
  local f=$1 comm=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
T_START=$(date +%s)

# ---------------------------------------------------------------- 1. packages
pkgs=(munge slurm-client slurmctld slurmd)
installed() {
  local p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}
if [ "${LOCAL_SLURM_SKIP_INSTALL:-0}" = 1 ] || installed; then
  log "packages: $(dpkg-query -W -f='${Package}=${Version} ' "${pkgs[@]}" 2>/dev/null || echo 'not from dpkg')"
else
  command -v apt-get >/dev/null || die "apt-get not found: install munge and slurm (slurmctld, slurmd, client) yourself and set LOCAL_SLURM_SKIP_INSTALL=1"
  export DEBIAN_FRONTEND=noninteractive
  for i in 1 2 3 4 5 6 7 8 9 10; do   # retry while another apt/dpkg holds the lock
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then break; fi
    [ "$i" = 10 ] && die "apt-get failed"
    log "apt-get failed (lock held?), retrying in 15 s"; sleep 15
  done
  log "installed: $(dpkg-query -W -f='${Package}=${Version} ' "${pkgs[@]}")"
fi
T_INSTALLED=$(date +%s)

# ---------------------------------------------------------------- 2. munge
# Debian's munge postinst creates /etc/munge/munge.key; create one if it is missing.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge        # socket dir; systemd would create it
pid_alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
wait_for 20 munged sh -c 'munge -n | unmunge'

# ---------------------------------------------------------------- 3. slurm config
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
GRES_NODE=""; GRES_TYPES=""; GRES_CONF=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_NODE=" Gres=gpu:fake:${FAKE_GPUS}"
  GRES_TYPES="GresTypes=gpu"
  # Each GPU needs its own character device file (slurmd refuses duplicate names, and without
  # a device it sets no CUDA_VISIBLE_DEVICES): null devices under names ending in the index.
  install -d -m 0755 /var/lib/slurm/fake-gpus
  for ((g = 0; g < FAKE_GPUS; g++)); do
    [ -c "/var/lib/slurm/fake-gpus/nvidia${g}" ] || { rm -f "/var/lib/slurm/fake-gpus/nvidia${g}"; mknod -m 0666 "/var/lib/slurm/fake-gpus/nvidia${g}" c 1 3; }
    GRES_CONF+="NodeName=${NODE} Name=gpu Type=fake File=/var/lib/slurm/fake-gpus/nvidia${g}"$'\n'
  done
fi
# MinJobAge=3600: finished jobs (state, batch script) stay visible to squeue/scontrol for an hour:
# the plugin needs >= 3x its first status delay to use squeue (no accounting database here),
# and the tests read Slurm's records of every job of a run after it ends.
# KillWait=5: a cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s).
NEW_CONF=$(cat <<EOF
# Single-node test cluster written by tests/slurm/start-local-slurm.sh
ClusterName=${CLUSTER}
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MinJobAge=3600
KillWait=5
${GRES_TYPES}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SlurmctldDebug=info
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdDebug=info
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB}${GRES_NODE} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
OLD_CONF=$(cat /etc/slurm/slurm.conf 2>/dev/null || true)
OLD_GRES=$(cat /etc/slurm/gres.conf 2>/dev/null || true)
if [ "$NEW_CONF" != "$OLD_CONF" ] || [ "${GRES_CONF%$'\n'}" != "$OLD_GRES" ]; then
  if pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; then
    log "configuration changed: restarting slurmctld and slurmd"
    stop_pidfile /run/slurmd.pid slurmd
    stop_pidfile /run/slurmctld.pid slurmctld
  fi
  install -d -m 0755 /etc/slurm
  printf '%s\n' "$NEW_CONF" > /etc/slurm/slurm.conf
  if [ -n "$GRES_CONF" ]; then printf '%s' "$GRES_CONF" > /etc/slurm/gres.conf; else rm -f /etc/slurm/gres.conf; fi
  chmod 0644 /etc/slurm/slurm.conf
fi

# ---------------------------------------------------------------- 4. slurmctld + slurmd
pid_alive /run/slurmctld.pid || /usr/sbin/slurmctld || die "slurmctld did not start"
wait_for 60 slurmctld sh -c 'scontrol ping | grep -q "is UP"'
pid_alive /run/slurmd.pid || /usr/sbin/slurmd -N "$NODE" || die "slurmd did not start"
# A node left DOWN or DRAINED by an earlier unclean stop is put back into service.
if sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -Eq 'down|drain'; then
  sleep 1; scontrol update nodename="$NODE" state=resume 2>/dev/null || true
fi
wait_for 60 "node ${NODE} to become usable" sh -c "sinfo -h -n '${NODE}' -o %T | grep -Eqx 'idle|mixed|allocated'"

log "cluster up: $(sinfo -h -o '%P %a %D %T %c cpus %m MB %G')"
log "timings: install $(( T_INSTALLED - T_START )) s, total $(( $(date +%s) - T_START )) s"
