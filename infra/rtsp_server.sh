#!/usr/bin/env bash
# A real RTSP camera for tests and demos: Debian's rtsp-server-perl (RTP over UDP only, as
# many NVRs and cheap relays are) fed by ffmpeg, which replays a video in real time.
#
#   bash infra/rtsp_server.sh install                    # apt-installs ffmpeg + rtsp-server-perl when missing
#   bash infra/rtsp_server.sh clip IN OUT [SECONDS]      # IN re-encoded to H.264 (what cameras send)
#   bash infra/rtsp_server.sh serve VIDEO [PORT] [NAME]  # rtsp://127.0.0.1:PORT/NAME until killed
#
# `serve` runs in the foreground; it stops the server and the publisher when it is terminated
# (SIGTERM/SIGINT) or when either of them dies. VIDEO should be H.264 (`clip` makes one): it is
# sent as is (-c copy), looped (-stream_loop -1) and paced (-re). Env: SOURCE_PORT (where
# ffmpeg publishes; default PORT+1), RTP_PORT (first UDP port of the server; default PORT+2),
# LOG_LEVEL (the server's, 0-5; default 2).
# Exit status 3 from `install`: the packages are missing and cannot be installed here.
set -euo pipefail

log() { printf '[rtsp_server] %s\n' "$*" >&2; }

have() { command -v ffmpeg >/dev/null 2>&1 && command -v rtsp-server-perl >/dev/null 2>&1; }

install() {
  if have; then return 0; fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      log "ffmpeg / rtsp-server-perl missing and neither root nor password-less sudo"; exit 3; fi
  fi
  log "installing ffmpeg rtsp-server-perl (Debian packages)"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  if ! "${apt[@]}" install -y -qq --no-install-recommends \
      ffmpeg rtsp-server-perl >&2; then
    "${apt[@]}" update -qq >&2 || true
    "${apt[@]}" install -y -qq --no-install-recommends \
      ffmpeg rtsp-server-perl >&2 || { log "apt-get could not install them"; exit 3; }
  fi
  have || { log "installed, yet ffmpeg / rtsp-server-perl are not on PATH"; exit 3; }
  # the package also enables a system service on 127.0.0.1:554; only the program is wanted
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now rtsp-server-perl >/dev/null 2>&1 || true
  fi
}

clip() {
  local in="$1" out="$2" seconds="${3:-60}"
  ffmpeg -nostdin -loglevel error -y -i "$in" -t "$seconds" -an -c:v libx264 -preset ultrafast \
    -tune zerolatency -g 10 -pix_fmt yuv420p "$out"
}

wait_port() {  # tcp port on 127.0.0.1 accepting within 10 s
  local port="$1" i
  for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

serve() {
  local video="$1" port="${2:-8554}" name="${3:-cam}"
  local source_port="${SOURCE_PORT:-$((port + 1))}" rtp_port="${RTP_PORT:-$((port + 2))}"
  [ -f "$video" ] || { log "no such video: $video"; exit 2; }
  local server="" publisher=""
  stop() {
    trap - EXIT INT TERM
    [ -n "$publisher" ] && kill "$publisher" 2>/dev/null || true
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
  }
  trap stop EXIT
  trap 'exit 0' INT TERM
  rtsp-server-perl --clientport "$port" --serverport "$source_port" \
    --client_listen_address 127.0.0.1 --source_listen_address 127.0.0.1 \
    --rtp_start_port "$rtp_port" --loglevel "${LOG_LEVEL:-2}" &
  server=$!
  wait_port "$source_port" || { log "the server did not listen on $source_port"; exit 1; }
  ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$video" -an -c:v copy \
    -f rtsp "rtsp://127.0.0.1:$source_port/$name" &
  publisher=$!
  log "serving $video as rtsp://127.0.0.1:$port/$name (RTP over UDP)"
  wait -n "$server" "$publisher" || true
  log "server or publisher ended"
  exit 1
}

case "${1:-}" in
  install) install ;;
  clip) shift; clip "$@" ;;
  serve) shift; serve "$@" ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
