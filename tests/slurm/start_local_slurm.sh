#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (localhost, CPU only): Debian's slurm-wlm + munge, slurmctld + slurmd
# started by hand (no systemd). For the slurm-marked test (tests/slurm/test_grid_slurm.py):
#
#   bash tests/slurm/start_local_slurm.sh            # install (apt) if needed, write slurm.conf, start the daemons
#   python -m pytest -q -n 0 -m slurm tests/slurm
#   bash tests/slurm/start_local_slurm.sh stop       # stop the daemons this script started
#
# cred_expire=30: a requeued job is eligible again after 30 s (SLURM's default: 120 s).
# Needs root. Accounting is off (no slurmdbd): finished jobs stay visible to `squeue -t all` for MinJobAge seconds.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurm
PIDS=/run/slurm-local

if [[ "${1:-start}" == "stop" ]]; then
  for p in slurmd slurmctld munged; do
    [[ -f "$PIDS/$p.pid" ]] && kill "$(cat "$PIDS/$p.pid")" 2>/dev/null || true
    rm -f "$PIDS/$p.pid"
  done
  echo "stopped"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" /var/log/slurm "$PIDS" /run/munge /var/lib/munge /var/log/munge
grep -q "^$HOST\b\|[[:space:]]$HOST\b" /etc/hosts || echo "127.0.0.1 $HOST" >> /etc/hosts

cat > "$CONF_DIR/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=10
SchedulerParameters=defer_batch
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES DefMemPerCPU=1024
EOF

[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
chown root:root /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key

start() {  # name, command...: start unless running
  local name=$1; shift
  if [[ -f "$PIDS/$name.pid" ]] && kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null; then return; fi
  "$@"
}
start munged munged --force --pid-file="$PIDS/munged.pid" 2>/dev/null || munged --force
start slurmctld slurmctld
start slurmd slurmd

for _ in $(seq 60); do
  if sinfo -h -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
    sinfo
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "SLURM did not come up: see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
