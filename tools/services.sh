#!/usr/bin/env bash
# Make sure the services the tests use are installed and answering:
#   PostgreSQL on 127.0.0.1:5432, user `postgres` without a password (trust)
#   Redis on 127.0.0.1:6379, and `redis-server` on PATH (tests start their own on other ports)
# Idempotent: when both already answer it only checks (well under a second). When something is
# missing it installs Debian's packages (apt-get, non-interactive); when installed but stopped it
# starts them (Postgres through pg_ctlcluster, creating a cluster when none exists; Redis as a
# daemon without persistence). Needs root (or password-less sudo) only for what it has to change.
# Exits non-zero with a message saying what failed.
#
# Environment (defaults are what the tests expect; the overrides exist to try this script out on
# spare ports without touching the services in use):
#   SERVICES_PG_PORT (5432), SERVICES_PG_CLUSTER (cluster name when one must be created: main),
#   SERVICES_REDIS_PORT (6379), SERVICES_WAIT_SECS (30)
set -euo pipefail

pg_port=${SERVICES_PG_PORT:-5432}
pg_new_cluster=${SERVICES_PG_CLUSTER:-main}
redis_port=${SERVICES_REDIS_PORT:-6379}
wait_secs=${SERVICES_WAIT_SECS:-30}
host=127.0.0.1

say() { echo "services: $*"; }
die() { echo "services: error: $*" >&2; exit 1; }

# Commands that change the system run as root: directly, or through password-less sudo.
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  as_root() { die "need root (or password-less sudo) to run: $*"; }
fi

have() { command -v "$1" >/dev/null 2>&1; }

pg_up() { have pg_isready && pg_isready -q -h "$host" -p "$pg_port" -t 2 >/dev/null 2>&1; }
# The tests connect as postgres@127.0.0.1 without a password: that must succeed, not just answer.
pg_trusts() {
  have psql && PGPASSWORD='' PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=3 \
    psql -X -w -q -h "$host" -p "$pg_port" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
}
redis_up() { have redis-cli && [ "$(redis-cli -h "$host" -p "$redis_port" ping 2>/dev/null)" = PONG ]; }
pg_server_installed() { have pg_ctlcluster && have pg_createcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

# Poll a check until it passes or wait_secs have gone by.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + wait_secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.3
  done
  say "$what answers"
}

# ---- fast path ------------------------------------------------------------------------------
if pg_up && pg_trusts && redis_up && have redis-server; then
  say "PostgreSQL ($host:$pg_port, trust for postgres) and Redis ($host:$redis_port) already running; nothing to do"
  exit 0
fi

# ---- install what is missing ----------------------------------------------------------------
packages=()
have psql && have pg_isready || packages+=(postgresql-client)
if ! pg_up && ! pg_server_installed; then packages+=(postgresql); fi
have redis-server || packages+=(redis-server)
have redis-cli || packages+=(redis-tools)
if [ ${#packages[@]} -gt 0 ]; then
  have apt-get || die "missing ${packages[*]} and there is no apt-get to install them"
  say "installing ${packages[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if [ "${DARKROOM_APT_UPDATED:-}" != 1 ]; then
    as_root apt-get update -q </dev/null || die "apt-get update failed"
    export DARKROOM_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" --no-install-recommends "${packages[@]}" </dev/null \
    || die "apt-get install ${packages[*]} failed"
  hash -r
  for cmd in psql pg_isready redis-server redis-cli; do have "$cmd" || die "$cmd still missing after installing ${packages[*]}"; done
fi

# ---- PostgreSQL -----------------------------------------------------------------------------
# The Debian cluster (version, name) listening on pg_port, if any: "VER NAME STATUS".
pg_cluster() { pg_lsclusters -h 2>/dev/null | awk -v p="$pg_port" '$3 == p { print $1, $2, $4; exit }'; }

if ! pg_up; then
  pg_server_installed || die "PostgreSQL does not answer on $host:$pg_port and no server is installed"
  read -r pg_ver pg_name pg_status <<<"$(pg_cluster)" || true
  if [ -z "${pg_ver:-}" ]; then
    # shellcheck disable=SC2012  # version directories: plain names
    pg_ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    pg_name=$pg_new_cluster
    if [ -e "/etc/postgresql/$pg_ver/$pg_name/postgresql.conf" ]; then
      # The package's cluster got another port (5432 was taken when it was installed): when it
      # is stopped, move it to pg_port; a running one is left alone.
      read -r other_port pg_status <<<"$(pg_lsclusters -h 2>/dev/null | awk -v v="$pg_ver" -v n="$pg_name" '$1 == v && $2 == n { print $3, $4; exit }')" || true
      [ "${pg_status:-}" != online ] \
        || die "cluster $pg_ver/$pg_name runs on port ${other_port:-?}, not $pg_port; set SERVICES_PG_CLUSTER to a new cluster name"
      say "moving stopped PostgreSQL cluster $pg_ver/$pg_name from port ${other_port:-?} to $pg_port"
      as_root pg_conftool "$pg_ver" "$pg_name" set port "$pg_port" || die "pg_conftool failed"
    else
      say "creating PostgreSQL cluster $pg_ver/$pg_name on port $pg_port"
      as_root pg_createcluster --port "$pg_port" "$pg_ver" "$pg_name" >/dev/null || die "pg_createcluster failed"
      pg_status=down
    fi
  fi
  # The socket directory lives on a tmpfs on many machines and may be gone after a reboot.
  as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  say "starting PostgreSQL cluster $pg_ver/$pg_name (was: ${pg_status:-unknown})"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" start \
    || say "pg_ctlcluster start returned an error (log: /var/log/postgresql/postgresql-$pg_ver-$pg_name.log); waiting anyway"
  wait_for "PostgreSQL ($host:$pg_port)" pg_up \
    || die "PostgreSQL does not answer on $host:$pg_port after ${wait_secs}s (log: /var/log/postgresql/postgresql-$pg_ver-$pg_name.log)"
fi

if ! pg_trusts; then
  # Let postgres@127.0.0.1 (and ::1) in without a password: the first matching pg_hba.conf line
  # wins, so the lines go on top. Only the Debian cluster serving pg_port is edited.
  read -r pg_ver pg_name _ <<<"$(pg_cluster)" || true
  [ -n "${pg_ver:-}" ] || die "PostgreSQL answers on $host:$pg_port but refuses postgres without a password, and it is not a Debian cluster this script can configure"
  hba=$(as_root runuser -u postgres -- psql -X -Atqc 'SHOW hba_file' -p "$pg_port" 2>/dev/null || true)
  [ -n "$hba" ] || hba=/etc/postgresql/$pg_ver/$pg_name/pg_hba.conf
  [ -f "$hba" ] || die "no pg_hba.conf at $hba"
  say "allowing postgres@$host without a password (trust) in $hba"
  tmp=$(mktemp)
  {
    echo "# added by darkroom tools/services.sh: the tests connect as postgres@127.0.0.1 without a password"
    echo "host    all             postgres        127.0.0.1/32            trust"
    echo "host    all             postgres        ::1/128                 trust"
    as_root cat "$hba"
  } >"$tmp"
  # shellcheck disable=SC2016  # expanded by the inner sh
  as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"   # keeps the file's owner and mode
  rm -f "$tmp"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" reload || die "reloading PostgreSQL failed"
  wait_for "PostgreSQL (postgres@$host:$pg_port, trust)" pg_trusts \
    || die "PostgreSQL still refuses postgres@$host:$pg_port without a password after editing $hba"
fi

# ---- Redis ----------------------------------------------------------------------------------
if ! redis_up; then
  log=/tmp/darkroom-redis-$redis_port.log
  say "starting redis-server on $host:$redis_port (no persistence; log $log)"
  # `-::1`: bind ::1 too where the machine has IPv6, without failing where it does not.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no \
    --dir /tmp --logfile "$log" --pidfile "/tmp/darkroom-redis-$redis_port.pid" \
    || die "redis-server failed to start (log: $log)"
  wait_for "Redis ($host:$redis_port)" redis_up \
    || die "Redis does not answer on $host:$redis_port after ${wait_secs}s (log: $log)"
fi

have redis-server || die "redis-server is not on PATH"
say "PostgreSQL on $host:$pg_port and Redis on $host:$redis_port are up"
