#!/usr/bin/env bash
# Measures the floor of the load generator's cost on this machine (issue
# 14): bin/readfloor reads N SSE streams of bin/server with nothing above
# the kernel but counting messages, with epoll + read (what the loop reader
# does) and with io_uring multishot receives, and the server's deliveries
# per CPU-second are taken over the same window. If even the floor's
# messages per CPU-second are not twice the server's, no reader reaches the
# issue's 2x on this machine.
# Usage: scripts/read-floor.sh [clients] [ticks/s] [runs]   (default 5000 10 1)
# Run `make build` first. Server on CPU 0, reader on CPU 1 (when there are two).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-5000}
rate=${2:-10}
runs=${3:-1}
. scripts/lib.sh "reader"
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
deliveries() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^pushbench_deliveries_total/ {s += $2} END {printf "%.0f\n", s}'; }
warmup=2 duration=5
for run in $(seq "$runs"); do
  for mode in epoll uring; do
    port=$((20000 + RANDOM % 20000))
    "${pin_server[@]}" bin/server -transport sse -addr "127.0.0.1:$port" -rate "$rate" -log warn &
    spid=$!; pids+=("$spid")
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    out=$(mktemp)
    "${pin_client[@]}" bin/readfloor -addr "127.0.0.1:$port" -clients "$clients" -mode "$mode" \
      -warmup "${warmup}s" -duration "${duration}s" >"$out" &
    rpid=$!
    # The server is sampled inside the reader's window: after the streams
    # are open (the reader prints nothing until the end) and the warm-up.
    until [ "$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^pushbench_connections_open/ {s += $2} END {print s+0}')" -ge "$clients" ]; do
      kill -0 "$rpid" 2>/dev/null || break
      sleep 0.1
    done
    sleep "$warmup"
    c0=$(cpu_ticks "$spid") d0=$(deliveries "$port")
    sleep $((duration - 1))
    c1=$(cpu_ticks "$spid") d1=$(deliveries "$port")
    wait "$rpid"
    kill "$spid"; wait "$spid" 2>/dev/null || true
    awk -v c="$((c1 - c0))" -v d="$((d1 - d0))" -v hz="$hz" -v line="$(cat "$out")" 'BEGIN {
      split(line, f, " "); for (i in f) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
      srv = d / (c / hz)
      printf "%-5s %5d clients x %s/s: reader %.0f msgs/CPU-s, server %.0f deliveries/CPU-s, ratio %.2f\n",
        v["mode"], v["clients"], "'"$rate"'", v["msgs_per_cpu_s"], srv, v["msgs_per_cpu_s"] / srv }'
    rm -f "$out"
  done
done
