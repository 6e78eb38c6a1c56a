#!/usr/bin/env bash
# A single-node SLURM cluster on this machine for SlurmClient's tests and `make demo-hpc`:
# Debian's munge, slurmctld, slurmd and slurm-client, configured in a private folder (nothing under
# /etc is changed), a munge key made fresh, every daemon bound to 127.0.0.1, their PIDs recorded.
#
#   bash scripts/slurm.sh up       install when missing, start (idempotent: a running cluster is kept)
#   bash scripts/slurm.sh down     stop the daemons this script started, by their recorded PIDs
#   bash scripts/slurm.sh env      print `export SLURM_CONF=…` for the shell (eval "$(… env)")
#
# SDT_SLURM_DIR (default /tmp/sdt-slurm) holds slurm.conf, the munge key and socket, state, logs
# and PIDs. SLURM's commands (sbatch, squeue, sacct, scancel) find the cluster through SLURM_CONF.
set -euo pipefail

DIR="${SDT_SLURM_DIR:-/tmp/sdt-slurm}"
CONF="$DIR/slurm.conf"
say() { printf 'slurm: %s\n' "$*" >&2; }

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

install() {
  local missing=()
  for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair##*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]}: install Debian's munge, slurmctld, slurmd and slurm-client (as root)"
    exit 10
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {
  local host memory ctld_port slurmd_port cpus
  host="$(hostname -s)"
  cpus="$(nproc)"
  # SLURM schedules memory (--mem); the node offers 80% of this machine's.
  memory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  ctld_port="$(free_port)"
  slurmd_port="$(free_port)"
  cat >"$CONF" <<EOF
# Written by scripts/slurm.sh: a single-node cluster on 127.0.0.1 for sdt-build's SlurmClient.
ClusterName=sdt
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket=$DIR/munge-socket/munge.socket.2
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
DefMemPerCPU=2048
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  install
  if alive munged && alive slurmctld && alive slurmd; then
    say "already running ($CONF)"
    return 0
  fi
  down quiet
  rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"  # a new cluster: job ids start again, so no old record stays
  mkdir -p "$DIR"/{munge,munge-socket,state,spool,log}
  chmod 755 "$DIR"
  # A fresh munge key for this cluster only, readable by munge alone; its socket reachable by all.
  rm -f "$DIR/munge/munge.key"
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$DIR/munge" "$DIR/munge-socket"
  chmod 700 "$DIR/munge"
  chmod 755 "$DIR/munge-socket"
  chmod 400 "$DIR/munge/munge.key"
  write_conf
  setsid setpriv --reuid=munge --regid=munge --init-groups munged -F --key-file="$DIR/munge/munge.key" \
    --socket="$DIR/munge-socket/munge.socket.2" --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/munge/munged.log" </dev/null >>"$DIR/log/munged.out" 2>&1 &
  echo $! >"$DIR/munged.pid"
  for _ in $(seq 1 50); do [ -S "$DIR/munge-socket/munge.socket.2" ] && break; sleep 0.1; done
  if ! alive munged; then
    say "munged did not start:"; tail -n 5 "$DIR/log/munged.out" >&2; exit 10
  fi
  export SLURM_CONF="$CONF"
  setsid slurmctld -D -f "$CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
  echo $! >"$DIR/slurmctld.pid"
  setsid slurmd -D -f "$CONF" -N "$(hostname -s)" </dev/null >>"$DIR/log/slurmd.out" 2>&1 &
  echo $! >"$DIR/slurmd.pid"
  for _ in $(seq 1 60); do
    if timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
      say "cluster up: $(sinfo -h -o '%N %c CPUs %m MB %T') (SLURM_CONF=$CONF)"
      return 0
    fi
    sleep 0.5
  done
  say "the cluster did not come up; last log lines:"
  tail -n 5 "$DIR"/log/*.log "$DIR"/log/*.out >&2 2>/dev/null || true
  exit 10
}

down() {
  for name in slurmd slurmctld munged; do
    if alive "$name"; then
      kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$name" || break; sleep 0.1; done
      alive "$name" && kill -9 "$(cat "$DIR/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$DIR/$name.pid"
  done
  [ "${1:-}" = quiet ] || say "stopped"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) say "usage: $0 up|down|env"; exit 2 ;;
esac
