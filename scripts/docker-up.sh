#!/usr/bin/env bash
# Start a Docker daemon for sdt-build: install Debian's docker.io (and debootstrap for
# `sdt-build base`) when missing, start dockerd without a bridge, wait for its socket.
# Idempotent: exits 0 at once when a daemon already answers.
set -euo pipefail

SOCKET="${SDT_DOCKER_SOCKET:-/var/run/docker.sock}"
LOG="${SDT_DOCKERD_LOG:-/tmp/sdt-dockerd.log}"
WAIT="${SDT_DOCKERD_WAIT:-60}"

say() { printf 'docker-up: %s\n' "$*" >&2; }

if docker -H "unix://$SOCKET" info >/dev/null 2>&1; then
  say "daemon already running at $SOCKET"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "dockerd/debootstrap are missing and installing them needs root."
    say "fix: run as root, or install Debian's docker.io and debootstrap yourself."
    exit 10
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "dockerd is missing and this system has no apt-get: install Docker Engine yourself."
    exit 10
  fi
  say "installing docker.io and debootstrap from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if [ "$(id -u)" != 0 ]; then
  say "starting dockerd needs root. fix: run 'sudo make docker-up' or start Docker yourself."
  exit 10
fi

# No bridge and no iptables: every container and build uses host networking.
say "starting dockerd (log: $LOG)"
setsid dockerd --bridge=none --iptables=false --host "unix://$SOCKET" >"$LOG" 2>&1 < /dev/null &
echo $! > /tmp/sdt-dockerd.pid

for _ in $(seq 1 "$WAIT"); do
  if docker -H "unix://$SOCKET" info >/dev/null 2>&1; then
    say "daemon ready (pid $(cat /tmp/sdt-dockerd.pid))"
    exit 0
  fi
  sleep 1
done
say "dockerd did not answer within ${WAIT}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 10
