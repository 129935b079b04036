#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (localhost), for trying `brc sweep slurm` and for the
# Slurm tests: installs Debian's slurm-wlm and munge when missing (needs root), writes a minimal
# slurm.conf, and starts munged, slurmctld and slurmd. Safe to run again (it restarts nothing
# that answers). `local-cluster.sh stop` stops the three daemons.
#
#   sudo scripts/slurm/local-cluster.sh        # then: sinfo; brc sweep slurm FILE --submit
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by brc scripts/slurm/local-cluster.sh"
HOST=$(hostname -s)

say() { echo "local-cluster: $*"; }
die() { echo "local-cluster: $*" >&2; exit 1; }

# Polls `$@` until it succeeds, for at most $1 seconds (no fixed sleeps beyond the poll step).
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

if [[ ${1:-start} == stop ]]; then
    for pid in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        [[ -s $pid ]] && kill "$(cat "$pid")" 2>/dev/null && say "stopped $(basename "$pid" .pid)"
    done
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [[ $(id -u) == 0 ]] || die "slurm-wlm and munge are missing: run as root to install them"
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
[[ $(id -u) == 0 ]] || die "starting the daemons needs root"

# munge: the key Debian's package made (or a fresh one), then the daemon.
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 sh -c 'munge -n | unmunge' || die "munged did not start"
    say "munged running"
fi

# slurm.conf: one node (this machine's CPUs and memory), one default partition.
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and is not ours: using it as it is"
else
    read -r CPUS MEM < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
    cat >"$CONF" <<CONF
$MARK
ClusterName=brc-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
KillWait=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    say "wrote $CONF ($CPUS CPUs, $MEM MB)"
fi
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd

if ! scontrol ping 2>/dev/null | grep -q UP; then
    /usr/sbin/slurmctld
    wait_for 30 sh -c 'scontrol ping | grep -q UP' || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
    say "slurmctld running"
fi
# Running when its pid file names a live slurmd (a stale file may name another process).
slurmd_running() { [[ -s /run/slurmd.pid ]] && [[ $(cat "/proc/$(cat /run/slurmd.pid)/comm" 2>/dev/null) == slurmd ]]; }
if ! slurmd_running; then
    /usr/sbin/slurmd
    say "slurmd running"
fi
node_ready() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)'; }
if ! wait_for 30 node_ready; then
    scontrol update nodename="$HOST" state=resume 2>/dev/null || true
    wait_for 30 node_ready || die "node $HOST is not up: $(sinfo -h -o '%T %E')"
fi
say "cluster up: $(sinfo -h -o '%P %D node(s) %T')"
