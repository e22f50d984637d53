#!/usr/bin/env bash
# Real PostgreSQL 15 and ActiveMQ Classic on 127.0.0.1 for `make test` and `make bench`, without
# systemd or docker: installs the Debian packages when missing, runs a throwaway cluster and broker
# instance under $SMSGW_SERVICES_DIR, and is idempotent (a service already answering is left alone).
#
#   scripts/services.sh up | down | pg-up | mq-up | pg-restart | mq-stop | mq-start | env
set -euo pipefail

DIR=${SMSGW_SERVICES_DIR:-/tmp/smsgw-services}
PG_PORT=${SMSGW_PG_PORT:-55432}
STOMP_PORT=${SMSGW_MQ_STOMP_PORT:-61613}
OPENWIRE_PORT=${SMSGW_MQ_OPENWIRE_PORT:-61616}
PG_BIN=/usr/lib/postgresql/15/bin
AMQ_HOME=/usr/share/activemq
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

apt_install() {
  say "installing $* from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "$@" >/dev/null 2>&1 || { as_root apt-get update -q >/dev/null; as_root apt-get install -y -q "$@" >/dev/null; }
}

as_postgres() { as_root runuser -u postgres -- "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_up() {
  [ -x "$PG_BIN/initdb" ] || apt_install postgresql
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then say "PostgreSQL already on 127.0.0.1:$PG_PORT"; return; fi
  local data="$DIR/pg/data"
  as_root mkdir -p "$DIR/pg"
  as_root chown postgres "$DIR/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_postgres "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  fi
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$DIR/pg/postgres.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null \
    || { tail -20 "$DIR/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
  say "PostgreSQL on 127.0.0.1:$PG_PORT"
}

pg_down() {
  [ -f "$DIR/pg/data/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null || true
}

stomp_ready() {
  python3 - "$STOMP_PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
data = s.recv(4096)
s.sendall(b"DISCONNECT\n\n\x00")
sys.exit(0 if data.startswith(b"CONNECTED") else 1)
PY
}

mq_start() {
  [ -f "$AMQ_HOME/bin/activemq.jar" ] || apt_install activemq
  if stomp_ready; then say "ActiveMQ already on 127.0.0.1:$STOMP_PORT"; return; fi
  local base="$DIR/mq"
  mkdir -p "$base/conf" "$base/data"
  if [ -d /etc/activemq/instances-available/main ]; then
    cp -n /etc/activemq/instances-available/main/* "$base/conf/" 2>/dev/null || true
  fi
  sed -e "s/@OPENWIRE_PORT@/$OPENWIRE_PORT/; s/@STOMP_PORT@/$STOMP_PORT/; s#@DATA@#$base/data#g" "$HERE/activemq/activemq.xml" > "$base/conf/activemq.xml"
  cp "$HERE/activemq/log4j.properties" "$base/conf/log4j.properties"
  # Started from this shell (not a subshell) with every stream redirected, so nothing waits on it.
  setsid nohup java -Xms128m -Xmx384m \
      --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED \
      --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
      -Dactivemq.home=$AMQ_HOME -Dactivemq.base="$base" -Dactivemq.conf="$base/conf" \
      -Dactivemq.data="$base/data" -Dactivemq.classpath="$base/conf" \
      -Dlog4j.configuration="file:$base/conf/log4j.properties" \
      -jar $AMQ_HOME/bin/activemq.jar start "xbean:file:$base/conf/activemq.xml" \
      > "$base/console.log" 2>&1 < /dev/null &
  echo $! > "$base/pid"
  for _ in $(seq 1 120); do
    if stomp_ready; then say "ActiveMQ on 127.0.0.1:$STOMP_PORT (STOMP), 127.0.0.1:$OPENWIRE_PORT (OpenWire)"; return; fi
    if ! kill -0 "$(cat "$base/pid")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  tail -30 "$base/console.log" >&2 || true
  die "ActiveMQ did not start"
}

mq_stop() {
  local pidfile="$DIR/mq/pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "ActiveMQ stopped"
}

print_env() {
  echo "SMSGW_TEST_PG_URL=postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "SMSGW_TEST_STOMP_URL=stomp://127.0.0.1:$STOMP_PORT"
  echo "SMSGW_TEST_OPENWIRE_URL=tcp://127.0.0.1:$OPENWIRE_PORT"
}

case "${1:-up}" in
  up) pg_up; mq_start ;;
  down) mq_stop; pg_down ;;
  pg-up) pg_up ;;
  mq-up|mq-start) mq_start ;;
  mq-stop) mq_stop ;;
  pg-restart) pg_down; pg_up ;;
  env) print_env ;;
  *) die "usage: $0 up|down|pg-up|mq-up|pg-restart|mq-stop|mq-start|env" ;;
esac
