# shellcheck shell=bash
# scripts/lib/servers.sh: starting and stopping the benchmark servers (wsloop and the peers of
# benches/peers/), shared by scripts/bench, scripts/ab-pair and scripts/cpu-split so that every
# figure in docs/benchmarks.md runs the servers with the same flags. Sourced, never run.
#
# The caller sets BIN (the release directory), PEERS (benches/peers), OUT (a directory for the
# servers' output), LOG (a file for their stderr) and STARTED=() (pids to kill on exit).

# The flags every benchmark gives wsloop: messages up to the 1 MiB case, one worker.
WSLOOP_BENCH_FLAGS="--max-message-size 2097152 --max-frame-size 2097152 --max-queued-bytes 8388608 --workers 1"

# server_cmd NAME: the command line of a server listening on a free port of 127.0.0.1. NAME is
# wsloop, fastwebsockets, tokio-tungstenite, raw, or the path of a wsloop binary (A/B runs).
server_cmd() {
  case "$1" in
    wsloop) echo "$BIN/wsloop --listen 127.0.0.1:0 $WSLOOP_BENCH_FLAGS" ;;
    fastwebsockets) echo "$PEERS/fastwebsockets-echo/target/release/fastwebsockets-echo --port 0" ;;
    tokio-tungstenite) echo "$PEERS/tokio-tungstenite-echo/target/release/tokio-tungstenite-echo --port 0" ;;
    raw) echo "$PEERS/raw-mio-echo/target/release/raw-mio-echo --port 0" ;;
    */*)
      if [ -x "$1" ]; then
        echo "$1 --listen 127.0.0.1:0 $WSLOOP_BENCH_FLAGS"
      else
        echo "no executable wsloop binary at $1" >&2
        return 1
      fi
      ;;
    *) echo "unknown server $1" >&2; return 1 ;;
  esac
}

# start_server NAME: starts it on CPU 0, waits until it says which port it listens on; sets
# SERVER_PID and SERVER_PORT.
start_server() {
  local cmd out port
  cmd="$(server_cmd "$1")" || return 1
  out="$OUT/server-${1//\//_}.out"
  : >"$out"
  # shellcheck disable=SC2086 # the command line is split on purpose
  RUST_LOG=warn taskset -c 0 $cmd >"$out" 2>>"$LOG" &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  for _ in $(seq 1 200); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out" | head -n1)"
    if [ -n "$port" ]; then SERVER_PORT="$port"; return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server $1 did not start (see $out and $LOG)" >&2
  return 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

server_url() { # NAME → the URL wsloop-load uses
  if [ "$1" = raw ]; then echo "tcp://127.0.0.1:$SERVER_PORT"; else echo "ws://127.0.0.1:$SERVER_PORT/echo"; fi
}
raw_flag() { [ "$1" = raw ] && echo "--raw" || true; }
