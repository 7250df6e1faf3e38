#!/usr/bin/env bash
# Installs everything pgha needs on a Debian 12 / Ubuntu 24.04 machine, idempotently:
#   Debian packages (PostgreSQL, etcd, HAProxy, keepalived, acl, iproute2; Prometheus, Alertmanager and the
#   postgres and blackbox exporters for the monitor role and its rules' tests),
#   the pgha package in ./.venv, and Patroni in /opt/pgha/patroni (built from the system Python,
#   because Patroni runs as the postgres user, who cannot enter /root where a clone often lives).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "pgha: run as root (sudo $0): the lab creates network namespaces and runs daemons as system users" >&2
  exit 4
fi

PG_VERSION="${PG_VERSION:-15}"
PKGS=(etcd-server etcd-client haproxy keepalived acl iproute2 python3-venv python3-pip
      "postgresql-${PG_VERSION}" "postgresql-client-${PG_VERSION}" ca-certificates
      systemd-container debootstrap gnupg pgbackrest
      prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-blackbox-exporter)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pgha bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

SYS_PY=/usr/bin/python3
if [ ! -x .venv/bin/pgha ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "pgha bootstrap: installing pgha into .venv" >&2
  [ -x .venv/bin/python ] || "$SYS_PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.installed
fi

PATRONI_VENV="${PGHA_PATRONI_VENV:-/opt/pgha/patroni}"
if ! runuser -u postgres -- "$PATRONI_VENV/bin/python" -c 'import patroni, etcd3' 2>/dev/null \
   && ! runuser -u postgres -- "$PATRONI_VENV/bin/python" -c 'import patroni, psycopg' 2>/dev/null; then
  echo "pgha bootstrap: installing Patroni into $PATRONI_VENV" >&2
  mkdir -p "$(dirname "$PATRONI_VENV")"
  "$SYS_PY" -m venv "$PATRONI_VENV"
  "$PATRONI_VENV/bin/pip" install -q --disable-pip-version-check 'patroni[etcd3,psycopg3]>=4.1,<4.2'
  chmod -R a+rX "$PATRONI_VENV"
fi
runuser -u postgres -- "$PATRONI_VENV/bin/patroni" --version >&2
