#!/usr/bin/env bash
# Measures issue 3's server targets with the real binaries, the server pinned
# to CPU 0 and the load generator to CPU 1 (when there are two):
#   1. idle server: RSS and CPU over 10 s with no clients;
#   2. memory per connected client: (RSS with N clients - idle RSS) / N;
#   3. fan-out: deliveries per server CPU-second with clients that keep up.
# Usage: scripts/server-targets.sh [clients-for-memory] [fanout-clients] [fanout-rate]
# Run `make build` first. Figures go to stdout; logs to $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
mem_clients=${1:-10000}
fan_clients=${2:-1000}
fan_rate=${3:-2000}
port_base=$((20000 + RANDOM % 20000))
tmp=$(mktemp -d)
. scripts/lib.sh "load generator"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {printf "%.0f\n", s}'; }

start_server() { # port transport rate
  "${pin_server[@]}" bin/server -transport "$2" -addr "127.0.0.1:$1" -rate "$3" -log warn 2>"$tmp/server-$2.log" &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; exit 1
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

for tr in sse ws poll; do
  port=$((port_base++))
  start_server "$port" "$tr" 1
  sleep 2
  idle_rss=$(rss_kib "$server_pid")
  c0=$(cpu_ticks "$server_pid"); sleep 10; c1=$(cpu_ticks "$server_pid")
  idle_rss=$(rss_kib "$server_pid")
  echo "idle $tr: RSS $((idle_rss / 1024)) MiB ($idle_rss KiB), CPU $(( (c1 - c0) * 1000 / hz )) ms over 10 s"
  # Memory per client: a slow feed (1 tick/s) so that memory, not CPU, is measured.
  "${pin_client[@]}" bin/loadgen -transport "$tr" -url "http://127.0.0.1:$port" -clients "$mem_clients" \
    -ramp 10s -duration 8s -drain 2s -quiet -out "$tmp/mem-$tr.json" >"$tmp/mem-$tr.txt" 2>&1 &
  lg=$!
  pids+=("$lg")
  # Sample the server's RSS in the middle of the measured window.
  sleep 16
  rss=$(rss_kib "$server_pid")
  open=$(metric "$port" pushbench_connections_open)
  # A poll client is counted open only while its request is held: divide by
  # the clients the load generator keeps polling instead.
  [ "$tr" = poll ] && open=$mem_clients
  gor=$(metric "$port" go_goroutines)
  wait "$lg" || true
  echo "memory $tr: $open clients, server RSS $((rss / 1024)) MiB, ($rss - $idle_rss) / $open = $(( (rss - idle_rss) / (open > 0 ? open : 1) )) KiB per client, goroutines $gor"
  stop_server
done

for tr in sse ws; do
  port=$((port_base++))
  start_server "$port" "$tr" "$fan_rate"
  "${pin_client[@]}" bin/loadgen -transport "$tr" -url "http://127.0.0.1:$port" -clients "$fan_clients" \
    -ramp 2s -duration 10s -drain 2s -quiet -out "$tmp/fan-$tr.json" >"$tmp/fan-$tr.txt" 2>&1 &
  lg=$!
  pids+=("$lg")
  sleep 5
  d0=$(metric "$port" pushbench_deliveries_total); c0=$(cpu_ticks "$server_pid"); t0=$(date +%s.%N)
  sleep 5
  d1=$(metric "$port" pushbench_deliveries_total); c1=$(cpu_ticks "$server_pid"); t1=$(date +%s.%N)
  wait "$lg" || true
  awk -v d="$((d1 - d0))" -v c="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v tr="$tr" -v n="$fan_clients" -v r="$fan_rate" \
    'BEGIN { cpu = c / hz; printf "fan-out %s: %d clients x %d ticks/s: %.0f deliveries/s, server CPU %.2f cores, %.0f deliveries per server CPU-second\n", tr, n, r, d / (t1 - t0), cpu / (t1 - t0), (cpu > 0 ? d / cpu : 0) }'
  grep -E 'missing|latency|saturat|WARN' "$tmp/fan-$tr.txt" | head -5 | sed 's/^/    loadgen: /'
  stop_server
done
echo "logs and load-generator results: $tmp"
trap - EXIT
cleanup
