#!/usr/bin/env bash
# Single-node SLURM cluster with accounting (munge + MariaDB + slurmdbd + slurmctld + slurmd) on a
# fresh Debian 12 machine.  Idempotent; run as root.  apt does not start services here
# (policy-rc.d), so every daemon is started by hand with setsid and polled.
# Usage: bash scripts/services/slurm.sh [start|status|stop]
# The node has CPUs=4 (declared), RealMemory=20000 and one fake GPU (gres.conf
# File=/dev/null): scheduling is real, compute is CPU.  See docs/slurm.md.
set -euo pipefail

CMD=${1:-start}
ACCOUNT=${SLURM_ACCOUNT_NAME:-taomake}
CLUSTER=${SLURM_CLUSTER_NAME:-taomake}
TIMEOUT=${SLURM_TIMEOUT:-60}
LOGDIR=${SLURM_LOGDIR:-/var/log/slurm}
HOST=$(hostname -s)
USERS="root ${SUDO_USER:-} ${SLURM_EXTRA_USERS:-}"

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: ERROR: $*" >&2; exit 1; }
poll() {  # poll DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 "$((TIMEOUT * 2))"); do
    if "$@" >/dev/null 2>&1; then say "$what: ready"; return 0; fi
    sleep 0.5
  done
  die "$what did not come up within ${TIMEOUT}s (logs in $LOGDIR)"
}
running() {  # a live (non-zombie) process of that name
  local p
  for p in $(pgrep -x "$1" 2>/dev/null || true); do
    [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" = Z ] || return 0
  done
  return 1
}

[ "$(id -u)" = 0 ] || die "run as root"

status() {
  local rc=0
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    if running "$d"; then say "$d running (pid $(pgrep -x "$d" | tr '\n' ' '))"; else say "$d NOT running"; rc=1; fi
  done
  sinfo -N -o '%N %T %c %m %G' 2>&1 || rc=1
  sacct -n -X -S now-1minutes >/dev/null 2>&1 && say "sacct works" || { say "sacct NOT working"; rc=1; }
  return $rc
}

pidfile_of() {
  case $1 in
    munged) echo /run/munge/munged.pid ;; mariadbd) echo /run/mysqld/mysqld.pid ;;
    *) echo "/run/$1.pid" ;;
  esac
}

stop() {  # by the pids in the daemons' pid files, never by name
  local pids=""
  for d in slurmd slurmctld slurmdbd mariadbd munged; do
    local f; f=$(pidfile_of "$d")
    [ -s "$f" ] || continue
    local p; p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then say "stopping $d (pid $p)"; kill -TERM "$p" || true; pids="$pids $p"; fi
  done
  for _ in $(seq 1 40); do
    alive=0
    for p in $pids; do
      # PID 1 does not reap orphans here: zombies count as stopped.
      [ -e /proc/$p ] && [ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" != Z ] && alive=1
    done
    [ $alive = 0 ] && { say "stopped"; return 0; }
    sleep 0.5
  done
  die "daemons still running after 20s:$pids"
}

install() {
  local need=0
  for b in slurmctld slurmd sinfo munged slurmdbd mariadbd; do command -v $b >/dev/null 2>&1 || need=1; done
  if [ $need = 1 ]; then
    say "installing slurmctld slurmd slurm-client munge slurmdbd mariadb-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurmctld slurmd slurm-client munge slurmdbd mariadb-server
  else
    say "packages present"
  fi
}

cgroups_writable() {  # slurm's cgroup/v1 plugin needs the memory and freezer hierarchies
  local c probe
  for c in memory freezer; do
    [ -d /sys/fs/cgroup/$c ] || return 1
    probe=/sys/fs/cgroup/$c/taomake-probe.$$
    mkdir "$probe" 2>/dev/null || return 1
    rmdir "$probe"
  done
}

configure() {
  mkdir -p "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd /etc/slurm /run/munge /run/mysqld
  chown slurm:slurm "$LOGDIR" /var/spool/slurmctld
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key

  # 4 CPUs declared on a 2-core machine (config_overrides: slurmd takes the declared count):
  # the test files that share the cluster run their jobs side by side instead of queueing
  # behind each other (most of them wait on a fake TAO's sleep, not on the CPU)
  local cpus=${SLURM_NODE_CPUS:-4}
  # Jobs run in cgroups where the machine lets slurmd make them (cgroup v1 controllers
  # mounted writable): memory is enforced (a job over its --mem ends OUT_OF_MEMORY) and
  # every process of a job, reparented ones included, is tracked and ends with it.
  local proctrack=proctrack/linuxproc task=task/none
  if cgroups_writable; then
    proctrack=proctrack/cgroup task=task/cgroup
    cat >/etc/slurm/cgroup.conf <<CONF
# Written by taomake scripts/services/slurm.sh
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
ConstrainDevices=no
CONF
    say "cgroups: memory enforced, processes tracked (proctrack/cgroup, task/cgroup)"
  else
    rm -f /etc/slurm/cgroup.conf
    say "cgroups: not writable here (cgroup v1 memory+freezer under /sys/fs/cgroup): memory" \
        "is not enforced and a job's reparented processes are not tracked"
  fi
  say "writing /etc/slurm/slurm.conf, gres.conf, slurmdbd.conf (node $HOST)"
  cat >/etc/slurm/slurm.conf <<CONF
# Written by taomake scripts/services/slurm.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdParameters=config_overrides
AuthType=auth/munge
ProctrackType=$proctrack
TaskPlugin=$task
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
MinJobAge=86400
ReturnToService=2
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=20000 Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  cat >/etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu Type=fake File=/dev/null
CONF
  cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 0600 /etc/slurm/slurmdbd.conf
}

start() {
  install
  configure
  if ! running munged; then
    say "starting munged"; runuser -u munge -- /usr/sbin/munged
  fi
  poll munge sh -c 'munge -n | unmunge'
  if ! running mariadbd; then
    [ -d /var/lib/mysql/mysql ] || { say "initialising MariaDB"; mysql_install_db --user=mysql >/dev/null; }
    say "starting mariadbd"
    setsid mariadbd --user=mysql >>"$LOGDIR/mariadb.log" 2>&1 </dev/null &
  fi
  poll mariadb mysqladmin ping
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  if ! running slurmdbd; then
    say "starting slurmdbd"; setsid slurmdbd >>"$LOGDIR/slurmdbd.out" 2>&1 </dev/null
  fi
  poll slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster -P | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER"
  sacctmgr -n list account format=account -P | grep -qx "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER"
  for u in $USERS; do
    sacctmgr -n list assoc user="$u" account="$ACCOUNT" format=user -P | grep -qx "$u" \
      || sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER"
  done
  if ! running slurmctld; then
    say "starting slurmctld"; setsid slurmctld -i >>"$LOGDIR/slurmctld.out" 2>&1 </dev/null
  else
    scontrol reconfigure || true
  fi
  poll slurmctld scontrol ping
  if ! running slurmd; then
    say "starting slurmd"; setsid slurmd >>"$LOGDIR/slurmd.out" 2>&1 </dev/null
  fi
  poll "node $HOST idle" sh -c "sinfo -h -N -n $HOST -o %T | grep -Eq '^(idle|mixed|allocated)'"
  poll sacct sacct -n -X -S now-1minutes
  status
}

case "$CMD" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) die "unknown command '$CMD' (start|status|stop)" ;;
esac
