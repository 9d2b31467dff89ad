#!/usr/bin/env bash
# Local infrastructure for order-service without Docker: a real PostgreSQL 15, a real
# Apache Kafka 4.x (KRaft, single node), both running as plain processes on 127.0.0.1, and the
# edge: Debian's nginx on PORT, in front of the gunicorn that `make run` starts on APP_BIND.
#
#   scripts/infra.sh up       start what is missing (idempotent; a no-op when all is up)
#   scripts/infra.sh down     stop what this script started (never a server it did not start)
#   scripts/infra.sh status   one line per service; exit 0 if all are up, 3 otherwise
#
# Configuration comes from the environment, then from .env in the repository root (which never
# overrides a variable already set):
#   DATABASE_URL             postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders
#   KAFKA_BOOTSTRAP_SERVERS  127.0.0.1:9092 (the first entry is the one checked / started)
#   KAFKA_CONTROLLER_PORT    9093
#   KAFKA_TOPIC              orders
#   KAFKA_DLQ_TOPIC          orders-dlq
#   KAFKA_TOPIC_PARTITIONS   6
#   ORDER_SERVICE_HOME       data, logs and downloads; default ${XDG_CACHE_HOME:-~/.cache}/order-service
#                            (outside the checkout, shared by every clone on the machine)
#   INFRA_PYTHON             interpreter with kafka-python-ng; default <repo>/.venv/bin/python
#   HOST, PORT, APP_BIND, EDGE_*, METRICS_ALLOW   the edge (see config.py); its config is rendered
#                            by scripts/render_nginx.py, so config.py's defaults apply
#   EDGE_CACHE_DIR           the edge's cache; default on tmpfs, /dev/shm/order-service-<hash of the
#                            home>, linked from $ORDER_SERVICE_HOME/nginx/cache
#
# If something already answers at the configured PostgreSQL or Kafka address, it is used as it
# is (after checking that it works with the configured settings) and never stopped by `down`.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'infra: %s\n' "$*"; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

# --- configuration ------------------------------------------------------------------------------

# Read KEY=VALUE lines the way python-dotenv (used by the app) does for the simple cases, without
# sourcing the file: it must not run code, and the environment must win over it.
load_dotenv() {
  local file=$ROOT/.env line key val
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    [[ -z $line || $line == '#'* ]] && continue
    line=${line#export }
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
    key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
    if [[ $val =~ ^\"(.*)\"[[:space:]]*$ || $val =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      val=${BASH_REMATCH[1]}
    else
      val=${val%%[[:space:]]#*}
      val=${val%"${val##*[![:space:]]}"}
    fi
    [[ -n ${!key+x} ]] || export "$key=$val"
  done <"$file"
}

urldecode() { printf '%b' "${1//%/\\x}"; }

is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }

load_config() {
  load_dotenv

  CACHE=${ORDER_SERVICE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/order-service}
  LOG_DIR=$CACHE/logs
  KAFKA_DIR=$CACHE/kafka
  mkdir -p "$CACHE" "$LOG_DIR" "$KAFKA_DIR" "$CACHE/m2"

  local url=${DATABASE_URL:-postgresql+psycopg2://orders:orders@127.0.0.1:5432/orders}
  local re='^postgres(ql)?(\+[a-z0-9]+)?://([^:@/]+)(:([^@/]*))?@([^:/?]+)(:([0-9]+))?/([^?]+)'
  [[ $url =~ $re ]] ||
    die "cannot parse DATABASE_URL=$url (expected postgresql+psycopg2://user:password@host:port/dbname)"
  PG_USER=$(urldecode "${BASH_REMATCH[3]}")
  PG_PASSWORD=$(urldecode "${BASH_REMATCH[5]}")
  PG_HOST=${BASH_REMATCH[6]}
  PG_PORT=${BASH_REMATCH[8]:-5432}
  PG_DB=$(urldecode "${BASH_REMATCH[9]}")

  local first=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}
  first=${first%%,*}
  first=${first#*://}
  [[ $first =~ ^([^:]+):([0-9]+)$ ]] ||
    die "cannot parse KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-} (expected host:port)"
  KAFKA_HOST=${BASH_REMATCH[1]}
  KAFKA_PORT=${BASH_REMATCH[2]}
  KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
  KAFKA_TOPIC=${KAFKA_TOPIC:-orders}
  KAFKA_DLQ_TOPIC=${KAFKA_DLQ_TOPIC:-orders-dlq}
  KAFKA_TOPIC_PARTITIONS=${KAFKA_TOPIC_PARTITIONS:-6}

  PG_BIN=/usr/lib/postgresql/15/bin
  PG_LOG=$LOG_DIR/postgres.log
  KAFKA_LOG=$LOG_DIR/kafka.log
  KAFKA_PID_FILE=$KAFKA_DIR/kafka.pid
  KAFKA_DATA=$KAFKA_DIR/data
  KAFKA_LIBS=$KAFKA_DIR/libs
  KAFKA_PROPS=$KAFKA_DIR/server.properties
  PYTHON=${INFRA_PYTHON:-$ROOT/.venv/bin/python}

  NGINX_DIR=$CACHE/nginx
  NGINX_CONF=$NGINX_DIR/nginx.conf
  NGINX_PID_FILE=$NGINX_DIR/run/nginx.pid
  NGINX_LOG=$NGINX_DIR/logs/error.log
  # tmpfs when there is one: every cache miss writes a file.
  if [[ -z ${EDGE_CACHE_DIR:-} ]]; then
    if [[ -d /dev/shm && -w /dev/shm ]]; then
      EDGE_CACHE_DIR=/dev/shm/order-service-$(printf '%s' "$CACHE" | sha256sum | cut -c1-12)
    else
      EDGE_CACHE_DIR=$NGINX_DIR/cache
    fi
  fi
}

# Two clones running `up` at once would otherwise both initdb / format / start.
take_lock() {
  exec 9>"$CACHE/infra.lock"
  flock -w 300 9 || die "another scripts/infra.sh has held $CACHE/infra.lock for 5 minutes"
}

# shellcheck disable=SC2016 # $1/$2 are the inner shell's arguments
tcp_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# Keep one previous log so a failed start can be compared with the last good one.
rotate_log() { [[ ! -s $1 ]] || mv -f "$1" "$1.1"; }

# kill -0 also succeeds for a zombie, which is what a killed server stays until PID 1 reaps it.
is_alive() {
  local state
  state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# stop_process NAME PID SIGNAL SECONDS LAST_SIGNAL: send SIGNAL, wait up to SECONDS for the process
# to end, then send LAST_SIGNAL.
stop_process() {
  local name=$1 pid=$2 signal=$3 seconds=$4 last=$5
  say "$name: stopping (pid $pid)"
  kill "-$signal" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + seconds))
  while is_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if is_alive "$pid"; then
    say "$name: still running after $seconds s, sending SIG$last (pid $pid)"
    kill "-$last" "$pid" 2>/dev/null || true
  fi
}

log_tail() {
  if [[ -f $1 ]]; then tail -n 15 "$1" | sed 's/^/    /' >&2; fi
}

# --- PostgreSQL ---------------------------------------------------------------------------------

# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
pg_as_owner() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster lives in $CACHE/pg, except as root when the `postgres` user cannot reach $CACHE
# (Debian's /root is mode 700): then it lives under postgres' home, and $CACHE/pg links to it.
pg_locate() {
  PG_DIR=$CACHE/pg
  if ((EUID == 0)) && ! { id postgres &>/dev/null && runuser -u postgres -- test -x "$CACHE"; }; then
    PG_DIR=/var/lib/postgresql/order-service/$(printf '%s' "$CACHE" | sha256sum | cut -c1-12)
  fi
  PG_DATA=$PG_DIR/data
}

pg_ensure_installed() {
  [[ -x $PG_BIN/postgres ]] && return 0
  ((EUID == 0)) ||
    die "PostgreSQL 15 is not installed: run 'sudo apt-get update && sudo apt-get install -y postgresql-15'"
  say "installing PostgreSQL 15 (apt-get install postgresql-15)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; } \
    >"$LOG_DIR/apt.log" 2>&1; then
    die "apt-get install postgresql-15 failed; read $LOG_DIR/apt.log"
  fi
}

# Pid of our postmaster, or nothing.
pg_our_pid() {
  local pid
  pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 0
  if [[ $pid =~ ^[0-9]+$ ]] && is_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres* ]]; then
    echo "$pid"
  fi
}

# After a crash, postgres refuses to start while the pid in its lock files "exists", and it counts
# a zombie or an unrelated program that got the same pid. Clearing them is safe once no live
# process works in the data dir (every server process chdirs there), the same guarantee postgres'
# own shared-memory interlock gives.
pg_clear_stale_locks() {
  [[ -f $PG_DATA/postmaster.pid ]] || compgen -G "$PG_DIR/.s.PGSQL.*.lock" >/dev/null || return 0
  local deadline=$((SECONDS + 10)) pids pid
  while pids=$(find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$PG_DATA" 2>/dev/null |
    cut -d/ -f3) && [[ -n $pids ]]; do
    local live=
    for pid in $pids; do is_alive "$pid" && live+=" $pid"; done
    [[ -n $live ]] || break
    ((SECONDS < deadline)) ||
      die "processes of an earlier PostgreSQL (pids$live) still use $PG_DATA; stop them first"
    sleep 0.2
  done
  say "PostgreSQL: removing stale lock files of a server that is gone"
  rm -f "$PG_DATA/postmaster.pid" "$PG_DIR"/.s.PGSQL.*
}

pg_port_of_running() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_ready() { "$PG_BIN/pg_isready" -q -t 2 -h "$PG_HOST" -p "$PG_PORT"; }

# Succeeds if the configured credentials work; otherwise prints libpq's complaint on stderr.
pg_login() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At -w \
    -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${1:-$PG_DB}" -c 'select 1' >/dev/null
}

pg_check_login() {
  local err
  err=$(pg_login 2>&1) ||
    die "our PostgreSQL at $PG_HOST:$PG_PORT refuses $PG_USER/$PG_DB: ${err//$'\n'/ }" \
      "(the role existed before with another password? fix DATABASE_URL or ALTER ROLE)"
}

PG_CONF_MARKER='# --- order-service (scripts/infra.sh)'

pg_init_cluster() {
  # Our lines are appended to postgresql.conf only after initdb succeeded: a data dir without them
  # is a leftover of an interrupted init (no user data can be in it yet), so it is cleared.
  if grep -qxF "$PG_CONF_MARKER" "$PG_DATA/postgresql.conf" 2>/dev/null; then return 0; fi
  # Never delete a directory that holds a cluster: someone's data may be in it.
  if [[ -f $PG_DATA/PG_VERSION ]]; then
    die "$PG_DATA holds a PostgreSQL cluster that this script did not finish setting up (no" \
      "'$PG_CONF_MARKER' line in its postgresql.conf), so it is left alone. If it is yours, add" \
      "that line to its postgresql.conf to use it as it is; if it is a leftover of an interrupted" \
      "'make infra' and holds nothing you need, move it away (mv '$PG_DATA' '$PG_DATA.old') and retry."
  fi
  rm -rf "$PG_DATA"
  mkdir -p "$PG_DIR"
  ((EUID != 0)) || chown postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  say "creating a PostgreSQL cluster in $PG_DATA"
  pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 ||
    die "initdb failed; read $PG_LOG"
  pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

$PG_CONF_MARKER
# Port, listen address and socket directory come from pg_ctl -o, so DATABASE_URL can change them.
EOF
}

# infra/postgres/postgresql.conf (explained in README), applied on every `up`: copied into the data
# dir, which postgresql.conf includes last, so it wins over the lines above. Prints "changed" when
# the copy is new. A running server is reloaded by pg_up; a setting that needs a restart says so.
PG_OWN_CONF=order-service.conf
pg_apply_settings() {
  local include="include_if_exists = '$PG_OWN_CONF'"
  grep -qxF "$include" "$PG_DATA/postgresql.conf" ||
    printf '%s\n' "$include" | pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null
  if ! cmp -s "$ROOT/infra/postgres/postgresql.conf" "$PG_DATA/$PG_OWN_CONF"; then
    pg_as_owner tee "$PG_DATA/$PG_OWN_CONF" <"$ROOT/infra/postgres/postgresql.conf" >/dev/null
    echo changed
  fi
}

pg_reload_settings() {
  pg_as_owner "$PG_BIN/pg_ctl" reload -D "$PG_DATA" >>"$PG_LOG" 2>&1 || die "pg_ctl reload failed; read $PG_LOG"
  local pending
  pending=$("$PG_BIN/psql" -X -q -At -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres \
    -c "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart")
  if [[ -n $pending ]]; then
    say "PostgreSQL: applied infra/postgres/postgresql.conf; $pending only after a restart" \
      "(make infra-down && make infra, when no one else's tests are using this server)"
  else
    say "PostgreSQL: applied infra/postgres/postgresql.conf"
  fi
}

# Fails if our server is gone; dies if it neither answers nor goes away within 30 s.
pg_wait_ready() {
  local deadline=$((SECONDS + 30))
  until pg_ready; do
    [[ -n $(pg_our_pid) ]] || return 1
    if ((SECONDS >= deadline)); then
      log_tail "$PG_LOG"
      die "PostgreSQL did not start within 30 s; read $PG_LOG"
    fi
    sleep 0.2
  done
}

# Runs as the cluster's superuser over the unix socket (trust), so it works whatever the
# configured role may do. Creates only what is missing; an existing role keeps its password.
pg_ensure_role_and_db() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres \
    -v role="$PG_USER" -v pw="$PG_PASSWORD" -v db="$PG_DB" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

pg_use_external() {
  local err
  if err=$(pg_login 2>&1); then
    say "PostgreSQL: using the server already at $PG_HOST:$PG_PORT (not started by this script)"
    return 0
  fi
  if [[ $err == *"database \"$PG_DB\" does not exist"* ]] && pg_login postgres 2>/dev/null; then
    PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -X -q -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" \
      -d postgres -c "CREATE DATABASE \"$PG_DB\"" >/dev/null 2>&1 ||
      die "the PostgreSQL server at $PG_HOST:$PG_PORT has no database $PG_DB and $PG_USER may not create it"
    say "PostgreSQL: created database $PG_DB on the server already at $PG_HOST:$PG_PORT"
    return 0
  fi
  die "a PostgreSQL server that this script did not start answers at $PG_HOST:$PG_PORT but refuses" \
    "$PG_USER/$PG_DB: ${err//$'\n'/ }. Either set DATABASE_URL to credentials that work there, or" \
    "stop that server (e.g. 'pg_ctlcluster 15 main stop') so that this script can start its own."
}

pg_up() {
  pg_ensure_installed
  pg_locate

  local pid
  pid=$(pg_our_pid)
  if [[ -n $pid ]]; then
    [[ $(pg_port_of_running) == "$PG_PORT" ]] ||
      die "our PostgreSQL (pid $pid) listens on port $(pg_port_of_running), but DATABASE_URL says" \
        "$PG_PORT: run 'scripts/infra.sh down' first"
    if pg_wait_ready; then
      [[ -z $(pg_apply_settings) ]] || pg_reload_settings
      pg_ensure_role_and_db
      pg_check_login
      say "PostgreSQL: already running at $PG_HOST:$PG_PORT (ours, pid $pid)"
      return 0
    fi
    say "PostgreSQL: ours (pid $pid) has gone away; starting it again"
  fi

  # pg_isready: 0 accepting, 1 rejecting (e.g. starting up), 2 no answer, 3 bad parameters.
  local rc=0
  "$PG_BIN/pg_isready" -q -t 2 -h "$PG_HOST" -p "$PG_PORT" || rc=$?
  if ((rc == 0 || rc == 1)); then
    ((rc == 0)) || sleep 2
    pg_use_external
    return 0
  fi
  is_local_host "$PG_HOST" ||
    die "nothing answers at $PG_HOST:$PG_PORT (from DATABASE_URL) and it is not this machine," \
      "so no server can be started there"
  ! tcp_open "$PG_HOST" "$PG_PORT" ||
    die "port $PG_PORT on $PG_HOST is taken by a program that is not PostgreSQL; stop it or" \
      "choose another port in DATABASE_URL"

  rotate_log "$PG_LOG"
  pg_init_cluster
  if [[ $PG_DIR != "$CACHE/pg" && ! -e $CACHE/pg ]]; then ln -sfn "$PG_DIR" "$CACHE/pg"; fi

  pg_clear_stale_locks
  pg_apply_settings >/dev/null
  say "PostgreSQL: starting at $PG_HOST:$PG_PORT (data $PG_DATA)"
  # The log is opened here rather than by pg_ctl -l because as root the server's user may not be
  # able to reach $CACHE/logs; it inherits the open file instead. 9>&- keeps the server from
  # holding our lock for as long as it runs.
  pg_as_owner "$PG_BIN/pg_ctl" start -w -t 30 -D "$PG_DATA" \
    -o "-p $PG_PORT -k '$PG_DIR' -c listen_addresses='$PG_HOST'" >>"$PG_LOG" 2>&1 </dev/null 9>&- ||
    { log_tail "$PG_LOG"; die "PostgreSQL did not start (waited up to 30 s); read $PG_LOG"; }
  pg_wait_ready || { log_tail "$PG_LOG"; die "PostgreSQL exited while starting; read $PG_LOG"; }
  pg_ensure_role_and_db
  pg_check_login
  say "PostgreSQL: up at $PG_HOST:$PG_PORT (ours, pid $(pg_our_pid))"
}

pg_down() {
  pg_locate
  local pid
  pid=$(pg_our_pid)
  if [[ -z $pid ]]; then
    say "PostgreSQL: ours is not running"
    return 0
  fi
  say "PostgreSQL: stopping (pid $pid)"
  pg_as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 >>"$PG_LOG" 2>&1 ||
    die "pg_ctl stop failed; read $PG_LOG"
}

pg_status() {
  pg_locate
  local pid state who files="data $PG_DATA  log $PG_LOG"
  pid=$(pg_our_pid)
  if [[ -n $pid ]]; then
    state=up who="ours, pid $pid"
    if ! pg_ready; then state=starting; fi
  elif { [[ -x $PG_BIN/pg_isready ]] && pg_ready; } || tcp_open "$PG_HOST" "$PG_PORT"; then
    state=up who="external, not started by this script" files=
  else
    state=down who="-"
  fi
  printf 'infra: postgres  %-8s %-16s %-40s %s\n' "$state" "$PG_HOST:$PG_PORT" "($who)" "$files"
  [[ $state == up ]]
}

# --- Kafka --------------------------------------------------------------------------------------

# Pid of our broker, or nothing; a pid file pointing at a dead or unrelated process is removed.
kafka_our_pid() {
  local pid
  [[ -f $KAFKA_PID_FILE ]] || return 0
  pid=$(<"$KAFKA_PID_FILE")
  if [[ $pid =~ ^[0-9]+$ ]] && is_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF "kafka.Kafka $KAFKA_PROPS"; then
    echo "$pid"
  else
    rm -f "$KAFKA_PID_FILE"
  fi
}

kafka_port_of_running() {
  sed -n 's/^listeners=PLAINTEXT:\/\/[^:]*:\([0-9]*\),.*/\1/p' "$KAFKA_PROPS" 2>/dev/null
}

kafka_check_java() {
  command -v java >/dev/null ||
    die "java not found: Kafka needs Java 17+ (apt-get install -y openjdk-17-jre-headless)"
  local version major
  version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
  major=${version%%.*}
  if [[ $major == 1 ]]; then major=$(cut -d. -f2 <<<"$version"); fi  # "1.8.0_392" style
  if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 17)); then
    die "Kafka needs Java 17+, but 'java' is version ${version:-unknown}"
  fi
}

# Maven is the only way to get Kafka here (no downloads outside package registries). The stamp
# holds the pom's checksum, so the common case costs one sha256sum.
kafka_fetch_jars() {
  local pom=$ROOT/infra/kafka/pom.xml sum
  sum=$(sha256sum "$pom" | cut -c1-64)
  [[ -f $KAFKA_LIBS/.pom.sha256 && $(<"$KAFKA_LIBS/.pom.sha256") == "$sum" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found: it fetches Kafka (apt-get install -y maven)"
  say "Kafka: fetching the broker's jars with Maven into $KAFKA_LIBS (once; log $LOG_DIR/maven.log)"
  rm -rf "$KAFKA_LIBS.tmp"
  mvn -B -ntp -f "$pom" -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >"$LOG_DIR/maven.log" 2>&1 ||
    { log_tail "$LOG_DIR/maven.log"; die "Maven could not fetch Kafka; read $LOG_DIR/maven.log"; }
  echo "$sum" >"$KAFKA_LIBS.tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
}

kafka_render_config() {
  sed -e "s|\${KAFKA_PORT}|$KAFKA_PORT|g" \
    -e "s|\${KAFKA_CONTROLLER_PORT}|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|\${KAFKA_DATA_DIR}|$KAFKA_DATA|g" \
    -e "s|\${KAFKA_TOPIC_PARTITIONS}|$KAFKA_TOPIC_PARTITIONS|g" \
    "$ROOT/infra/kafka/server.properties" >"$KAFKA_PROPS"
  # A copy, so the running broker does not depend on the clone that started it.
  cp "$ROOT/infra/kafka/log4j2.properties" "$KAFKA_DIR/log4j2.properties"
}

# The storage tool writes meta.properties last, so a data dir without it was never usable and
# is reformatted from scratch. A formatted dir is the truth about the cluster id.
kafka_format_storage() {
  local id_file=$KAFKA_DIR/cluster.id meta=$KAFKA_DATA/meta.properties id
  if [[ -f $meta ]]; then
    id=$(sed -n 's/^cluster\.id=//p' "$meta")
    [[ -f $id_file && $(<"$id_file") == "$id" ]] || echo "$id" >"$id_file"
    return 0
  fi
  if [[ ! -s $id_file ]]; then
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid >"$id_file.tmp"
    mv "$id_file.tmp" "$id_file"
  fi
  # Never delete a directory that holds a cluster's log segments, whatever else is missing.
  if [[ -d $KAFKA_DATA ]] && find "$KAFKA_DATA" -name '*.log' -print -quit 2>/dev/null | grep -q .; then
    die "$KAFKA_DATA holds Kafka log segments but no meta.properties, so it is left alone. If its" \
      "records matter, restore its meta.properties (from a backup, or with the cluster id of its" \
      "__cluster_metadata log); otherwise move it away (mv '$KAFKA_DATA' '$KAFKA_DATA.old') and retry."
  fi
  say "Kafka: formatting storage in $KAFKA_DATA (cluster id $(<"$id_file"))"
  rm -rf "$KAFKA_DATA"
  java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$(<"$id_file")" -c "$KAFKA_PROPS" \
    >>"$KAFKA_LOG" 2>&1 || { log_tail "$KAFKA_LOG"; die "formatting Kafka storage failed; read $KAFKA_LOG"; }
}

kafka_start() {
  kafka_check_java
  kafka_fetch_jars
  kafka_render_config
  rotate_log "$KAFKA_LOG"
  kafka_format_storage
  say "Kafka: starting at 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data $KAFKA_DATA)"
  # setsid: the broker must outlive the shell (and process group) that ran `up`, e.g. make or CI;
  # 9>&-: it must not hold our lock for as long as it runs.
  setsid nohup java -Xms256m -Xmx512m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &
  echo $! >"$KAFKA_PID_FILE"
}

# Creates the service's topics if missing and checks the broker serves metadata, retrying until
# the deadline: "the port is open" is not "the broker is ready" right after a start.
# On our broker a topic with too few partitions is grown (a client that connected before us may
# have auto-created it); on someone else's broker that only earns a warning.
kafka_ensure_topics() {
  local seconds=$1 too_few=$2
  [[ -x $PYTHON ]] ||
    die "no usable Python at $PYTHON to create topics with: create the project venv first" \
      "(python3 -m venv .venv && .venv/bin/pip install -r requirements.txt) or set INFRA_PYTHON"
  "$PYTHON" - "$KAFKA_HOST:$KAFKA_PORT" "$KAFKA_TOPIC_PARTITIONS" "$seconds" "$too_few" \
    "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC" <<'PY'
import logging, sys, time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic

logging.disable(logging.CRITICAL)  # kafka-python logs every refused connection while we retry
bootstrap, partitions, seconds, too_few, source_topic, dlq_topic = sys.argv[1:]
topics = [source_topic, dlq_topic]
partitions, deadline = int(partitions), time.monotonic() + float(seconds)
# A dead letter is a source record plus the dlq.* headers, so its topic takes larger records
# (app/ingest/dead_letters.py says the same; tests/unit/test_dead_letters.py checks they agree).
MAX_BYTES = {source_topic: "2097152", dlq_topic: "3145728"}
TOPIC_ALREADY_EXISTS = 36


def check(response, what):
    for topic, code, *message in response.topic_errors:
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"{what} {topic}: error {code} {message}")


while True:
    admin = None
    try:
        # api_version pinned: if the client's version probe fails it falls back to requests
        # that Kafka 4.x no longer accepts (KIP-896).
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=(2, 6, 0),
                                 client_id="order-service-infra", request_timeout_ms=10000)
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if missing:
            check(admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=1,
                          topic_configs={"max.message.bytes": MAX_BYTES[t]}) for t in missing],
                timeout_ms=10000), "creating topic")
            print(f"infra: Kafka: created topics {', '.join(missing)} ({partitions} partitions)")
        # A dead-letter topic made before its limit was raised gets the new one (idempotent).
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dlq_topic,
                                            configs={"max.message.bytes": MAX_BYTES[dlq_topic]})])
        for t in admin.describe_topics(topics):
            if t["error_code"] != 0:
                raise RuntimeError(f"topic {t['topic']}: error {t['error_code']}")
            have = len(t["partitions"])
            if have >= partitions:
                continue
            if too_few == "grow":
                check(admin.create_partitions({t["topic"]: NewPartitions(partitions)},
                                              timeout_ms=10000), "adding partitions to")
                print(f"infra: Kafka: topic {t['topic']} had {have} partition(s), now {partitions}")
            else:
                print(f"infra: warning: topic {t['topic']} has {have} partition(s),"
                      f" KAFKA_TOPIC_PARTITIONS={partitions}", file=sys.stderr)
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - any failure before the deadline means "not ready yet"
        if time.monotonic() >= deadline:
            print(f"infra: last error: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(2)
        time.sleep(0.5)
    finally:
        if admin is not None:
            admin.close()
PY
}

kafka_wait_ready() {
  local pid=$1 deadline=$((SECONDS + 60))
  until tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; do
    if ! is_alive "$pid"; then
      rm -f "$KAFKA_PID_FILE"
      log_tail "$KAFKA_LOG"
      die "Kafka exited while starting; read $KAFKA_LOG"
    fi
    ((SECONDS < deadline)) || die "Kafka did not start within 60 s; read $KAFKA_LOG"
    sleep 0.25
  done
  kafka_ensure_topics $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) grow ||
    die "Kafka did not start within 60 s; read $KAFKA_LOG"
}

# Split in two so that PostgreSQL can start while the JVM boots.
kafka_up_begin() {
  KAFKA_STARTED_PID=
  local pid
  pid=$(kafka_our_pid)
  if [[ -n $pid ]]; then
    [[ $(kafka_port_of_running) == "$KAFKA_PORT" ]] ||
      die "our Kafka (pid $pid) listens on port $(kafka_port_of_running), but" \
        "KAFKA_BOOTSTRAP_SERVERS says $KAFKA_PORT: run 'scripts/infra.sh down' first"
    KAFKA_MODE=ours KAFKA_STARTED_PID=$pid
    return 0
  fi
  if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    KAFKA_MODE=external
    return 0
  fi
  is_local_host "$KAFKA_HOST" ||
    die "nothing answers at $KAFKA_HOST:$KAFKA_PORT (KAFKA_BOOTSTRAP_SERVERS) and it is not this" \
      "machine, so no broker can be started there"
  ! tcp_open 127.0.0.1 "$KAFKA_CONTROLLER_PORT" ||
    die "Kafka's controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is taken by another program;" \
      "stop it or set KAFKA_CONTROLLER_PORT"
  kafka_start
  KAFKA_MODE=new KAFKA_STARTED_PID=$(<"$KAFKA_PID_FILE")
}

kafka_up_finish() {
  case $KAFKA_MODE in
    external)
      kafka_ensure_topics 15 warn ||
        die "something that this script did not start answers at $KAFKA_HOST:$KAFKA_PORT, but it" \
          "does not work as a Kafka broker; stop it or set KAFKA_BOOTSTRAP_SERVERS"
      say "Kafka: using the broker already at $KAFKA_HOST:$KAFKA_PORT (not started by this script)"
      ;;
    ours)
      kafka_wait_ready "$KAFKA_STARTED_PID"
      say "Kafka: already running at $KAFKA_HOST:$KAFKA_PORT (ours, pid $KAFKA_STARTED_PID)"
      ;;
    new)
      kafka_wait_ready "$KAFKA_STARTED_PID"
      say "Kafka: up at $KAFKA_HOST:$KAFKA_PORT (ours, pid $KAFKA_STARTED_PID)"
      ;;
  esac
}

kafka_down() {
  local pid
  pid=$(kafka_our_pid)
  if [[ -z $pid ]]; then
    say "Kafka: ours is not running"
    return 0
  fi
  stop_process Kafka "$pid" TERM 30 KILL
  rm -f "$KAFKA_PID_FILE"
}

kafka_status() {
  local pid state who files="data $KAFKA_DATA  log $KAFKA_LOG"
  pid=$(kafka_our_pid)
  if [[ -n $pid ]]; then
    state=up who="ours, pid $pid"
    tcp_open "$KAFKA_HOST" "$KAFKA_PORT" || state=starting
  elif tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    state=up who="external, not started by this script" files=
  else
    state=down who="-"
  fi
  printf 'infra: kafka     %-8s %-16s %-40s %s\n' "$state" "$KAFKA_HOST:$KAFKA_PORT" "($who)" "$files"
  [[ $state == up ]]
}

# --- the edge (nginx) ---------------------------------------------------------------------------

nginx_ensure_installed() {
  command -v nginx >/dev/null && return 0
  ((EUID == 0)) || die "nginx is not installed: run 'sudo apt-get update && sudo apt-get install -y nginx'"
  say "installing nginx (apt-get install nginx)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } \
    >"$LOG_DIR/apt.log" 2>&1; then
    die "apt-get install nginx failed; read $LOG_DIR/apt.log"
  fi
}

# Pid of our nginx master, or nothing.
nginx_our_pid() {
  local pid
  pid=$(cat "$NGINX_PID_FILE" 2>/dev/null) || return 0
  if [[ $pid =~ ^[0-9]+$ ]] && is_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF -- "-c $NGINX_CONF"; then
    echo "$pid"
  fi
}

# HOST:PORT as rendered (config.py's defaults apply), into EDGE_LISTEN and EDGE_PROBE.
nginx_listen() {
  EDGE_LISTEN=$(sed -n 's/^ *listen \([^ ;]*\).*/\1/p' "$NGINX_CONF" 2>/dev/null | head -n 1)
  EDGE_PROBE=${EDGE_LISTEN/#0.0.0.0:/127.0.0.1:}
}

nginx_render() {
  [[ -x $PYTHON ]] || die "no usable Python at $PYTHON to render the nginx config with: run 'make install'"
  mkdir -p "$NGINX_DIR"
  if [[ $EDGE_CACHE_DIR != "$NGINX_DIR/cache" ]]; then ln -sfn "$EDGE_CACHE_DIR" "$NGINX_DIR/cache"; fi
  "$PYTHON" "$ROOT/scripts/render_nginx.py" --prefix "$NGINX_DIR" --cache-dir "$EDGE_CACHE_DIR" >/dev/null ||
    die "could not render the nginx config (see the message above)"
  nginx -t -q -p "$NGINX_DIR" -c "$NGINX_CONF" 2>"$NGINX_DIR/logs/check.log" ||
    { log_tail "$NGINX_DIR/logs/check.log"; die "nginx refuses the rendered $NGINX_CONF"; }
  nginx_listen
}

nginx_up() {
  nginx_ensure_installed
  local pid
  pid=$(nginx_our_pid)
  if [[ -n $pid ]]; then
    # Reused as it is; a changed setting (a new rendering) is applied with a reload, which keeps
    # open connections and the cache.
    local before
    before=$(sha1sum <"$NGINX_CONF")
    nginx_render
    if [[ $(sha1sum <"$NGINX_CONF") != "$before" ]]; then
      kill -HUP "$pid"
      say "nginx: already running (ours, pid $pid); reloaded with the changed settings"
    else
      say "nginx: already running at $EDGE_LISTEN (ours, pid $pid)"
    fi
    return 0
  fi
  nginx_render
  ! tcp_open "${EDGE_PROBE%:*}" "${EDGE_PROBE##*:}" ||
    die "$EDGE_LISTEN is taken by another program (a gunicorn started before the edge existed?);" \
      "stop it, or set PORT for the edge (and APP_BIND for gunicorn)"
  say "nginx: starting at $EDGE_LISTEN (cache $EDGE_CACHE_DIR)"
  # It detaches itself (daemon on); setsid and 9>&- as for Kafka.
  setsid nginx -p "$NGINX_DIR" -c "$NGINX_CONF" </dev/null >>"$NGINX_LOG" 2>&1 9>&- ||
    { log_tail "$NGINX_LOG"; die "nginx did not start; read $NGINX_LOG"; }
  local deadline=$((SECONDS + 10))
  until [[ -n $(nginx_our_pid) ]] && tcp_open "${EDGE_PROBE%:*}" "${EDGE_PROBE##*:}"; do
    ((SECONDS < deadline)) || { log_tail "$NGINX_LOG"; die "nginx did not start within 10 s; read $NGINX_LOG"; }
    sleep 0.1
  done
  say "nginx: up at $EDGE_LISTEN (ours, pid $(nginx_our_pid))"
}

nginx_down() {
  local pid
  pid=$(nginx_our_pid)
  if [[ -z $pid ]]; then
    say "nginx: ours is not running"
    return 0
  fi
  # QUIT is nginx's graceful stop: it finishes the requests in flight.
  stop_process nginx "$pid" QUIT 15 TERM
}

nginx_status() {
  local pid state who files="conf $NGINX_CONF  log $NGINX_DIR/logs  cache $EDGE_CACHE_DIR"
  pid=$(nginx_our_pid)
  nginx_listen
  if [[ -n $pid ]]; then
    state=up who="ours, pid $pid"
  else
    state=down who="-" files=
  fi
  printf 'infra: nginx     %-8s %-16s %-40s %s\n' "$state" "${EDGE_LISTEN:--}" "($who)" "$files"
  [[ $state == up ]]
}

# --- commands -----------------------------------------------------------------------------------

cmd_up() {
  take_lock
  kafka_up_begin
  pg_up
  kafka_up_finish
  nginx_up
}

cmd_down() {
  take_lock
  nginx_down
  kafka_down
  pg_down
}

cmd_status() {
  local rc=0
  pg_status || rc=3
  kafka_status || rc=3
  nginx_status || rc=3
  return $rc
}

main() {
  case ${1:-} in
    up | down | status) load_config; "cmd_$1" ;;
    *) echo "usage: scripts/infra.sh up|down|status" >&2; exit 2 ;;
  esac
}

main "$@"
