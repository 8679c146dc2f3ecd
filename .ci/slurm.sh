#!/usr/bin/env bash
# A single-node SLURM on loopback, for the tests marked `slurm` (CI and development).
#
#   .ci/slurm.sh start   install (if missing) munge + SLURM, write the config, start munged,
#                        slurmctld and slurmd, wait until `sinfo` shows the node idle
#   .ci/slurm.sh stop    cancel every job, stop the three daemons (pid files), wait for them
#   .ci/slurm.sh status  sinfo + squeue
#
# Needs root and apt (Debian/Ubuntu). No systemd is used: the daemons put themselves in the
# background. Everything listens on 127.0.0.1 only. A start that finds a running controller
# leaves it alone (idempotent); `stop` only stops daemons whose pid files this script wrote.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
RUN=/run/nemo-dask-slurm
LOG=/var/log/slurm

log() { echo "slurm.sh: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
     && command -v sinfo >/dev/null && command -v munged >/dev/null; then
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "SLURM is not installed and this is not root on Debian/Ubuntu: cannot install it"
    exit 1
  fi
  log "installing slurmctld slurmd slurm-client munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
  [ "$mem_mb" -ge 1024 ] || mem_mb=1024
  mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$RUN" "$LOG"
  cat > "$CONF_DIR/slurm.conf" <<EOF
# Written by nemo_dask .ci/slurm.sh: one node on loopback, for tests.
ClusterName=nemo-dask-ci
SlurmctldHost=${host}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${STATE}
SlurmdSpoolDir=${SPOOL}
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=30
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  if id munge >/dev/null 2>&1; then
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    su -s /bin/sh munge -c "munged"
  else
    munged --force
  fi
}

wait_idle() {
  local host i state
  host=$(hostname -s)
  for i in $(seq 1 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in
      idle*|mix*|alloc*) log "node $host is $state"; return 0 ;;
      down*|drain*|*unk*) [ "$i" = 10 ] && scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  log "the node did not become idle within 60 s; logs in $LOG"
  tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
  return 1
}

start() {
  install
  if sinfo -h >/dev/null 2>&1; then
    log "a SLURM controller already answers; leaving it as it is"
    wait_idle
    return
  fi
  mkdir -p "$RUN"
  write_config
  start_munge
  slurmctld -i
  slurmd
  wait_idle
}

stop_pid() {
  local file=$1 pid i
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop() {
  if [ -s "$RUN/slurmctld.pid" ] && command -v scancel >/dev/null; then
    scancel --full --user=root 2>/dev/null || true
    sleep 1
  fi
  stop_pid "$RUN/slurmd.pid"
  stop_pid "$RUN/slurmctld.pid"
  stop_pid /run/munge/munged.pid
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
