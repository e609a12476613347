#!/usr/bin/env bash
# Ensure a PostgreSQL server answers on 127.0.0.1:5432 and a database `camflow` exists.
# Idempotent.  Order: already answering -> done; cluster installed but stopped -> start it;
# nothing installed -> apt-get install postgresql, then start.  On a cluster THIS SCRIPT
# INSTALLED (a fresh dev/CI box) where user postgres cannot log in over TCP without a
# password, trust lines for 127.0.0.1/::1 are added to pg_hba.conf.  An existing cluster's
# pg_hba.conf is never changed: give a password (PGPASSWORD or ~/.pgpass) instead.
# CAMFLOW_PG_TRUST=0 never adds trust; CAMFLOW_PG_TRUST=force also adds it to an existing
# cluster (only on a throwaway box: anyone on the machine then logs in as anyone).
#
#   bash infra/postgres.sh        # env: PGHOST (127.0.0.1) PGPORT (5432) PGUSER (postgres) CAMFLOW_DB (camflow)
set -euo pipefail

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
DB="${CAMFLOW_DB:-camflow}"
export PGHOST PGPORT PGUSER

log() { printf '[postgres] %s\n' "$*" >&2; }
fresh_install=0  # 1: this run installed PostgreSQL, so its cluster holds nothing of anyone's
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"
  elif [ "$(id -un)" = postgres ]; then "$@"
  else sudo -u postgres "$@"; fi
}

answering() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 2
  else
    (exec 3<>"/dev/tcp/$PGHOST/$PGPORT") 2>/dev/null
  fi
}

wait_answering() {
  for _ in $(seq 1 60); do answering && return 0; sleep 0.5; done
  return 1
}

start_existing_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 1
  local ver name port status
  # prefer the cluster configured for $PGPORT, else the first one
  while read -r ver name port status _; do
    [ "$port" = "$PGPORT" ] || continue
    if [ "$status" != online ]; then
      log "starting cluster $ver/$name (port $port)"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
    fi
    return 0
  done < <(pg_lsclusters --no-header 2>/dev/null)
  return 1
}

install_postgres() {
  log "PostgreSQL not installed: apt-get install -y postgresql"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
  fresh_install=1
  if ! pg_lsclusters --no-header 2>/dev/null | grep -q .; then
    local ver; ver="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    log "creating cluster $ver/main on port $PGPORT"
    as_root pg_createcluster --port "$PGPORT" "$ver" main
  fi
}

# 1. server up -------------------------------------------------------------------
if ! answering; then
  if ! start_existing_cluster; then
    if ! command -v pg_lsclusters >/dev/null 2>&1 || ! pg_lsclusters --no-header 2>/dev/null | grep -q .; then
      install_postgres
    fi
    start_existing_cluster || { log "no PostgreSQL cluster on port $PGPORT (see pg_lsclusters)"; exit 1; }
  fi
  wait_answering || { log "PostgreSQL did not come up on $PGHOST:$PGPORT"; exit 1; }
fi

# 2. TCP login as $PGUSER without password (dev box) -------------------------------
if ! psql -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  trust="${CAMFLOW_PG_TRUST:-1}"
  if [ "$trust" = 1 ] && [ "$fresh_install" != 1 ]; then
    log "not adding trust to the pg_hba.conf of an existing cluster (CAMFLOW_PG_TRUST=force would)"
    trust=0
  fi
  if { [ "$trust" = 1 ] || [ "$trust" = force ]; } && [ "$PGUSER" = postgres ] && command -v pg_lsclusters >/dev/null 2>&1; then
    hba="$(as_pg psql -h /var/run/postgresql -p "$PGPORT" -d postgres -Atqc 'show hba_file')"
    if ! grep -q '^# camflow dev trust' "$hba"; then
      log "adding 127.0.0.1/::1 trust for local dev to $hba"
      tmp="$(mktemp)"
      { echo "# camflow dev trust (infra/postgres.sh)"
        echo "host all all 127.0.0.1/32 trust"
        echo "host all all ::1/128 trust"
        cat "$hba"; } > "$tmp"
      as_root install -m 640 -o postgres -g postgres "$tmp" "$hba"; rm -f "$tmp"
      as_pg psql -h /var/run/postgresql -p "$PGPORT" -d postgres -Atqc 'select pg_reload_conf()' >/dev/null
    fi
  fi
  psql -w -d postgres -Atqc 'select 1' >/dev/null || {
    log "cannot log in as $PGUSER@$PGHOST:$PGPORT without a password (set PGPASSWORD or ~/.pgpass;"
    log "on a throwaway CI box CAMFLOW_PG_TRUST=force adds 127.0.0.1 trust to pg_hba.conf)"; exit 1; }
fi

# 3. database --------------------------------------------------------------------
if [ "$(psql -w -d postgres -Atqc "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
  log "creating database $DB"
  psql -w -d postgres -qc "create database \"$DB\"" >/dev/null
fi
echo "postgresql://$PGUSER@$PGHOST:$PGPORT/$DB"
