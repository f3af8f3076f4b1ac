#!/usr/bin/env bash
# Bring up (or take down) a single-node SLURM cluster with accounting on this
# machine, from Debian 12 packages (slurm 22.05, munge 0.5, mariadb 10.11).
#
#   tests/slurm/local_slurm.sh up     # install if needed, configure, start, smoke-test
#   tests/slurm/local_slurm.sh down   # stop only the daemons `up` started
#
# Needs root. There is no systemd: the daemons run in the foreground under
# setsid, and their PIDs are recorded in $STATE/pids/. All state, sockets, pid
# and log files live under $STATE (env LOCAL_SLURM_DIR, default /tmp/local-slurm);
# only slurm.conf, slurmdbd.conf (and gres.conf) go to /etc/slurm (see docs/cluster.md).
# Env: LOCAL_SLURM_FAKE_GPUS=N declares N fake GPUs (see write_configs).
set -eEuo pipefail
trap 'echo "local_slurm: ERROR: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

STATE=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
FAKE_GPUS=${LOCAL_SLURM_FAKE_GPUS:-0}
CLUSTER=local ACCOUNT=local
DB_PORT=${LOCAL_SLURM_DB_PORT:-3307}       # not 3306, to stay clear of a system MariaDB
DB_PASS=slurmdbpass                        # throw-away test database, bound to 127.0.0.1
SOCK=$STATE/munge/run/munge.socket.2       # non-default munge socket
CONF_DIR=/etc/slurm
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order; `down` stops in reverse
NODE=$(hostname -s)

die() { echo "local_slurm: ERROR: $*" >&2; exit 1; }
log() { echo "local_slurm: $*"; }

# wait_for SECONDS CMD...: retry CMD every 0.5 s until it succeeds; fail after SECONDS.
wait_for() {
  local t=$1 i; shift
  for ((i = 0; i < t * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

# running PID: the process exists and is not a zombie (PID 1 may be slow to reap it).
running() { [[ -r /proc/$1/stat ]] && ! awk '{exit $3 != "Z"}' "/proc/$1/stat" 2>/dev/null; }
stopped() { ! running "$1"; }

# alive NAME: the recorded PID runs and is still that program (guards against PID reuse).
alive() {
  local f=$STATE/pids/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  running "$pid" && [[ $(<"/proc/$pid/comm") == "$1"* ]]
}

# start NAME CMD...: run CMD in its own session, output to $STATE/log/NAME.out, record PID.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
  sleep 0.3
  alive "$name" || die "$name exited at once; see $STATE/log/$name.out"
  log "started $name (pid $!)"
}

install_packages() {
  local p missing=()
  for p in slurmctld slurmd slurm-client munge slurmdbd mariadb-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (~15 s)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
  { "${apt[@]}" "${missing[@]}" || { apt-get update && "${apt[@]}" "${missing[@]}"; }; } \
    >"$STATE/log/apt.out" 2>&1 || die "apt-get install failed; see $STATE/log/apt.out"
}

write_configs() {
  local cpus mem gres_types="" node_gres="" g
  cpus=$(nproc)
  mem=$(awk '/^MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)   # MiB, 90% of RAM
  mkdir -p "$CONF_DIR"
  # Real GPUs are declared with "GresTypes=gpu", "Gres=gpu:N" on the NodeName line and
  # a gres.conf line "NodeName=<node> Name=gpu File=/dev/nvidia[0-<N-1>]" (slurmd
  # counts the device files; "Count=N" alone leaves the node INVAL). Without GPUs,
  # sbatch rejects --gpus/--gres=gpu: "Invalid generic resource (gres) specification".
  # LOCAL_SLURM_FAKE_GPUS=N backs N GPUs by null char devices, so GPU jobs run, see
  # CUDA_VISIBLE_DEVICES=0.. and show gres/gpu=N in sacct's AllocTRES.
  rm -f "$CONF_DIR/gres.conf"
  if ((FAKE_GPUS > 0)); then
    gres_types="GresTypes=gpu" node_gres="Gres=gpu:$FAKE_GPUS"
    mkdir -p "$STATE/fake-gpu"
    for ((g = 0; g < FAKE_GPUS; g++)); do
      [[ -c $STATE/fake-gpu/nvidia$g ]] || mknod -m 666 "$STATE/fake-gpu/nvidia$g" c 1 3
    done
    echo "NodeName=$NODE Name=gpu File=$STATE/fake-gpu/nvidia[0-$((FAKE_GPUS - 1))]" \
      >"$CONF_DIR/gres.conf"
  fi
  # The snakemake slurm executor strips SLURM_CONF from its inner srun's environment,
  # so the config must be at the compiled-in default path /etc/slurm/slurm.conf.
  cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by tests/slurm/local_slurm.sh: single-node test cluster, state in $STATE
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# proctrack/cgroup fails in this container: track processes via /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# Finished jobs stay visible to squeue this long (for squeue-based status checks).
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# With a non-default munge socket, AccountingStoragePass names that socket.
AccountingStoragePass=$SOCK
# Record GPUs in sacct's ReqTRES/AllocTRES, and keep sbatch --comment (the
# executor puts rule_<rule>[_wildcards_<values>] there) for sacct -o Comment.
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
$gres_types
DefMemPerCPU=$((mem / cpus))
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # slurmdbd 22.05 has no -f: it reads slurmdbd.conf beside slurm.conf (mode 0600).
  install -m 0600 /dev/stdin "$CONF_DIR/slurmdbd.conf" <<EOF
# Written by tests/slurm/local_slurm.sh
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
EOF
}

start_munge() {
  # munged wants its key in a 0700 dir (0400 file) and its socket dir 0755.
  install -d -m 0700 "$STATE/munge/etc" && install -d -m 0755 "$STATE/munge/run"
  local key=$STATE/munge/etc/munge.key
  [[ -s $key ]] || dd if=/dev/urandom bs=1024 count=1 status=none >"$key"
  chmod 0400 "$key"
  start munged munged -F --socket="$SOCK" --key-file="$key" --pid-file="$STATE/run/munged.pid" \
    --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
  wait_for 10 bash -c "munge -n -S '$SOCK' | unmunge -S '$SOCK'" || die "munged does not answer"
}

start_mariadb() {
  # The mysql user must own the data dir and its pid/log/socket files.
  local db=$STATE/mysql
  install -d -o mysql -g mysql -m 0750 "$db"
  if [[ ! -d $db/data/mysql ]]; then
    log "initialising the MariaDB data dir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$db/data" \
      >"$STATE/log/mariadb-install.out" 2>&1 || die "mariadb-install-db failed; see $STATE/log/"
  fi
  start mariadbd mariadbd --no-defaults --user=mysql --datadir="$db/data" \
    --socket="$db/mysqld.sock" --pid-file="$db/mysqld.pid" --log-error="$db/error.log" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --innodb-buffer-pool-size=64M
  wait_for 30 mariadb-admin --no-defaults -S "$db/mysqld.sock" -u root ping ||
    die "mariadbd does not answer; see $db/error.log"
  local h
  for h in 127.0.0.1 localhost; do
    echo "CREATE USER IF NOT EXISTS 'slurm'@'$h' IDENTIFIED BY '$DB_PASS';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$h';"
  done | mariadb --no-defaults -S "$db/mysqld.sock" -u root
}

# sacctmgr add fails with "already exists" on re-runs; the output goes to a log.
sacctmgr_add() { sacctmgr -i add "$@" >>"$STATE/log/sacctmgr.out" 2>&1 || true; }

# node_idle: true when the node is idle; resumes it if a saved state left it drained/down.
node_idle() {
  local st
  st=$(sinfo -h -n "$NODE" -o %T) || return 1
  [[ $st == idle ]] && return 0
  [[ $st == drain* || $st == down* ]] && scontrol update NodeName="$NODE" State=RESUME
  return 1
}

smoke_test() {
  wait_for 60 node_idle ||
    die "node $NODE not idle: $(sinfo -h -n "$NODE" -o '%T %E' 2>&1); see $STATE/log/"
  srun -N1 -n1 -t 1 hostname >/dev/null || die "srun hostname failed; see $STATE/log/"
  local id
  id=$(sbatch --parsable -t 1 -o /dev/null --wait --wrap true) || die "sbatch --wrap true failed"
  wait_for 30 bash -c "sacct -n -X -j '$id' -o State | grep -q COMPLETED" ||
    die "job $id not COMPLETED in sacct: $(sacct -X -j "$id" 2>&1)"
  log "up: node $NODE idle; srun, sbatch and sacct work (job $id)"
}

conf_sums() { md5sum "$CONF_DIR"/{slurm,slurmdbd,gres}.conf 2>/dev/null || true; }

up() {
  ((EUID == 0)) || die "must run as root"
  local n=0 d before
  for d in "${DAEMONS[@]}"; do alive "$d" && n=$((n + 1)); done
  mkdir -p "$STATE"/{pids,log,run,slurmctld,slurmd} && chmod 0755 "$STATE"
  install_packages
  before=$(conf_sums)
  write_configs
  if ((n == ${#DAEMONS[@]})) && [[ $before == "$(conf_sums)" ]]; then
    log "already running (state in $STATE); checking that it works"
    smoke_test
    return
  fi
  ((n == 0)) || { log "partly running or config changed: restarting"; down; }
  start_munge
  start_mariadb
  start slurmdbd slurmdbd -D
  wait_for 30 sacctmgr -n show cluster || die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
  sacctmgr_add cluster "$CLUSTER"
  sacctmgr_add account "$ACCOUNT" Cluster="$CLUSTER" Description=test Organization=test
  for d in root ${SUDO_USER:-}; do sacctmgr_add user "$d" Account="$ACCOUNT" Cluster="$CLUSTER"; done
  start slurmctld slurmctld -D
  wait_for 30 scontrol ping || die "slurmctld does not answer; see $STATE/log/slurmctld.log"
  start slurmd slurmd -D
  smoke_test
}

down() {
  ((EUID == 0)) || die "must run as root"
  local i d pid
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    d=${DAEMONS[i]}
    if alive "$d"; then
      pid=$(<"$STATE/pids/$d.pid")
      kill -TERM "$pid" 2>/dev/null || true
      wait_for 30 stopped "$pid" ||
        { log "$d ($pid) ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid"; }
      log "stopped $d (pid $pid)"
    fi
    rm -f "$STATE/pids/$d.pid"
  done
  log "down: no daemon started by this script is running (packages, $STATE and /etc/slurm kept)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down   (state dir: \$LOCAL_SLURM_DIR, default /tmp/local-slurm)" ;;
esac
