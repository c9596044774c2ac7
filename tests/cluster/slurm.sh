#!/usr/bin/env bash
# A one-node SLURM on this machine for tests/cluster: munged, slurmctld and slurmd run as root, without
# systemd or cgroups, from a generated slurm.conf in a private folder.
#
#   tests/cluster/slurm.sh up       # install (apt-get, once), start the daemons, wait for the node to be idle
#   tests/cluster/slurm.sh down     # stop exactly the daemons `up` started (their recorded pids)
#   tests/cluster/slurm.sh status   # exit 0 when the cluster answers
#
# Clients need SLURM_CONF=$ECA_SLURM_DIR/slurm.conf (the folder also holds slurm.env to source, the daemon
# logs and jobcomp.log: one line per job end, requeues included). No slurmdbd: sacct does not work here.
# `up` twice is harmless: running daemons are kept. Exit codes: 0 ok, 1 error, 77 skipped (not root, or
# no apt-get / no SLURM packages), the line saying why on stderr.
set -euo pipefail
DIR=${ECA_SLURM_DIR:-/tmp/eca-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

skip() { echo "SKIP: one-node SLURM: $*" >&2; exit 77; }
die() { echo "slurm.sh: $*" >&2; exit 1; }

# The pid in FILE if that process is running and its command is NAME (a reused pid is not ours).
live_pid() {
    local file=$1 name=$2 pid cmd
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$name"* ]] && echo "$pid"
}

install() {
    [ "$(id -u)" = 0 ] || skip "needs root (apt-get, daemons as root)"
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null &&
        command -v sbatch >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || skip "no apt-get to install slurmctld, slurmd, slurm-client and munge"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 ||
            skip "apt-get could not install slurmctld slurmd slurm-client munge"
    fi
}

write_conf() {
    local node
    node=$(slurmd -C | head -n 1)  # NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..: the real hardware
    cat > "$CONF" <<EOF
ClusterName=ecatest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again this many seconds after it ended (default 120)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
# Look at pending jobs every second (default 60): a requeued job starts as soon as it may
SchedulerParameters=sched_interval=1,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
# Finished jobs stay visible to scontrol for half an hour; the batch script and steps get KillWait
# seconds between SIGTERM and SIGKILL (a checkpoint must be written in that time)
MinJobAge=1800
KillWait=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
$node State=UNKNOWN
# FORCE:8: up to 8 jobs share a CPU, so the tests' small jobs all run at once
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
    printf 'export SLURM_CONF=%s\n' "$CONF" > "$DIR/slurm.env"
}

start_munge() {
    live_pid "$DIR/munge/munged.pid" munged >/dev/null && return
    if [ ! -s "$DIR/munge/munge.key" ]; then
        (umask 077; dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none)
    fi
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for "munged" 20 live_pid "$DIR/munge/munged.pid" munged
}

wait_for() {
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up within ${seconds}s; see $DIR/*.log"
}

node_idle() { [ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" = idle ]; }

up() {
    install
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
    chmod 700 "$DIR" "$DIR/munge"
    if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null && live_pid "$DIR/slurmd.pid" slurmd >/dev/null; then
        node_idle || wait_for "the node" 30 node_idle
        echo "SLURM already up: SLURM_CONF=$CONF"
        return
    fi
    down quiet
    write_conf
    start_munge
    # -c: a fresh controller state (no jobs from an earlier session)
    slurmctld -c -f "$CONF"
    wait_for slurmctld 30 scontrol ping
    slurmd -f "$CONF"
    wait_for "the node" 30 node_idle
    echo "SLURM up: SLURM_CONF=$CONF (node $HOST, logs in $DIR)"
}

# Stop the recorded daemons: SIGTERM, then SIGKILL after 15 s. Only the pids in our pid files.
stop_pid() {
    local file=$1 name=$2 pid i
    pid=$(live_pid "$file" "$name") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 75; i++)); do
        [ -d "/proc/$pid" ] || { rm -f "$file"; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

down() {
    local jobs i
    # Our private cluster's jobs only (SLURM_CONF is ours): none may outlive the daemons
    if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null && jobs=$(squeue -h -o %i 2>/dev/null) && [ -n "$jobs" ]; then
        # shellcheck disable=SC2086  # one id a word
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 250; i++)); do   # up to KillWait (30 s) and a little more
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munge/munged.pid" munged
    [ "${1:-}" = quiet ] || echo "SLURM down ($DIR kept: logs)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) [ -f "$CONF" ] && scontrol ping >/dev/null 2>&1 ;;
    *) echo "usage: $0 up|down|status" >&2; exit 1 ;;
esac
