#!/usr/bin/env bash
# Ensure an MQTT broker (Mosquitto) answers on $MQTT_HOST:$MQTT_PORT for `camflow notify` and
# its tests, and that the mosquitto_sub / mosquitto_pub clients are installed. Idempotent.
# Order: already answering (and clients present) -> done; not installed -> apt-get install
# mosquitto mosquitto-clients (Debian); stopped -> start the system service (default port);
# still not answering -> start a mosquitto of our own for $MQTT_HOST:$MQTT_PORT with its config,
# pid, log and persistence under $CAMFLOW_VAR/mosquitto (anonymous access, bound to $MQTT_HOST:
# a dev/CI box only; production brokers get users, ACLs and TLS, see docs/notify.md).
#
#   bash infra/mosquitto.sh          # env: MQTT_HOST (127.0.0.1) MQTT_PORT (1883) CAMFLOW_VAR (var)
#   bash infra/mosquitto.sh stop     # stops only the mosquitto this script started itself
# Prints mqtt://HOST:PORT when the broker answers.
set -euo pipefail

MQTT_HOST="${MQTT_HOST:-127.0.0.1}"
MQTT_PORT="${MQTT_PORT:-1883}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VAR="${CAMFLOW_VAR:-$REPO/var}"
OWN="$VAR/mosquitto"
PIDFILE="$OWN/mosquitto-$MQTT_PORT.pid"

log() { printf '[mosquitto] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

answering() { (exec 3<>"/dev/tcp/$MQTT_HOST/$MQTT_PORT") 2>/dev/null; }

wait_answering() {
  for _ in $(seq 1 40); do answering && return 0; sleep 0.25; done
  return 1
}

own_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  if own_running; then
    pid="$(cat "$PIDFILE")"
    log "stopping our mosquitto (pid $pid, port $MQTT_PORT)"
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  else
    log "no mosquitto of ours on port $MQTT_PORT (a system service is left alone)"
  fi
  rm -f "$PIDFILE"
  exit 0
fi

# 1. packages -----------------------------------------------------------------------
installed() {
  { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } \
    && command -v mosquitto_sub >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1
}
if ! installed; then
  log "installing Debian packages mosquitto mosquitto-clients"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  # a machine with systemd starts the service on install; give it a moment
  wait_answering || true
fi
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# 2. broker up ------------------------------------------------------------------------
if ! answering; then
  # the packaged service listens on the default port (Debian's config: localhost only)
  if [ "$MQTT_PORT" = 1883 ] && { [ -x /etc/init.d/mosquitto ] \
       || systemctl cat mosquitto.service >/dev/null 2>&1; }; then
    log "starting the system mosquitto service"
    as_root service mosquitto start >/dev/null 2>&1 || true
    wait_answering || true
  fi
fi
if ! answering; then
  mkdir -p "$OWN/data"
  conf="$OWN/mosquitto-$MQTT_PORT.conf"
  {
    echo "# written by infra/mosquitto.sh: a dev/CI broker (anonymous, bound to $MQTT_HOST)"
    echo "listener $MQTT_PORT $MQTT_HOST"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $OWN/data/"
    echo "pid_file $PIDFILE"
    echo "log_dest file $OWN/mosquitto-$MQTT_PORT.log"
    # run as whoever runs this script (as root mosquitto would switch to user `mosquitto`,
    # which cannot write under $OWN)
    echo "user $(id -un)"
  } > "$conf"
  log "starting our own mosquitto on $MQTT_HOST:$MQTT_PORT ($conf)"
  "$MOSQUITTO" -d -c "$conf"
  wait_answering || { log "mosquitto did not come up on $MQTT_HOST:$MQTT_PORT (see $OWN/mosquitto-$MQTT_PORT.log)"; exit 1; }
fi
echo "mqtt://$MQTT_HOST:$MQTT_PORT"
