#!/usr/bin/env bash
# Measures what bin/netshape costs and what it adds, with the real binaries:
# the server pinned to CPU 0, netshape and the load generator to CPU 1 (as
# bench pins them). For each transport and client count, one run straight to
# the server (loopback) and one through the profile:
#   - netshape CPU per delivered tick (its CPU over the load generator's
#     whole run / ticks received) and its share of a core, its peak RSS;
#   - latency p50/p99 and connect p50 each way, and what the profile added
#     (shaped minus loopback), against the profile's one-way delay and RTT.
# Usage: scripts/netshape-cost.sh [profile] [clients...]   (default: wan 100 200)
# Environment: RATE (ticks/s, 50), DURATION (10s), TRANSPORTS ("sse ws poll").
# Run `make build` first. Figures go to stdout; results and logs to $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-wan}
shift || true
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(100 200)
rate=${RATE:-50}
duration=${DURATION:-10s}
read -r -a transports <<<"${TRANSPORTS:-sse ws poll}"
port=$((20000 + RANDOM % 20000))
tmp=$(mktemp -d)
. scripts/lib.sh "load generator"
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
echo "profile $profile, $rate ticks/s, $duration per run; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

for tr in "${transports[@]}"; do
  port=$((port + 1))
  "${pin_server[@]}" bin/server -transport "$tr" -addr "127.0.0.1:$port" -rate "$rate" -log warn 2>"$tmp/server-$tr.log" &
  server=$!
  pids+=("$server")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  "${pin_client[@]}" bin/netshape -upstream "127.0.0.1:$port" -profile "$profile" >"$tmp/netshape-$tr.out" 2>"$tmp/netshape-$tr.log" &
  proxy=$!
  pids+=("$proxy")
  for _ in $(seq 100); do [ -s "$tmp/netshape-$tr.out" ] && break; sleep 0.1; done
  paddr=$(sed -n 's/^listening //p' "$tmp/netshape-$tr.out")
  for n in "${clients[@]}"; do
    for via in loopback "$profile"; do
      url="http://127.0.0.1:$port"
      [ "$via" = loopback ] || url="http://$paddr"
      out="$tmp/$tr-$n-$via.json"
      c0=$(cpu_ticks "$proxy"); t0=$(date +%s.%N)
      "${pin_client[@]}" bin/loadgen -transport "$tr" -url "$url" -clients "$n" -ramp 2s -warmup 1s \
        -duration "$duration" -quiet -out "$out" >"$tmp/$tr-$n-$via.txt" 2>&1 || true
      c1=$(cpu_ticks "$proxy"); t1=$(date +%s.%N)
      jq -r --arg via "$via" --arg tr "$tr" --argjson n "$n" --argjson cpu "$(( c1 - c0 ))" --argjson hz "$hz" \
        --argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" --argjson hwm "$(hwm_kib "$proxy")" \
        '"\($tr) \($n) clients via \($via): received \(.counts.received) missing \(.counts.missing) dup \(.counts.duplicates); latency p50 \(.latency.p50_ms) p99 \(.latency.p99_ms) ms; connect p50 \(.connect.p50_ms) ms" +
         (if $via == "loopback" then "" else "; proxy CPU \($cpu / $hz) s = \(($cpu / $hz / $wall * 100 | floor)) % of a core, \((($cpu / $hz) / .counts.received * 1e6 * 10 | floor) / 10) us per delivered tick, peak RSS \($hwm) KiB" end)' "$out"
    done
    lo="$tmp/$tr-$n-loopback.json" sh="$tmp/$tr-$n-$profile.json"
    jq -rn --slurpfile a "$lo" --slurpfile b "$sh" --arg tr "$tr" --argjson n "$n" \
      '"  added by \($tr) \($n): latency p50 +\(($b[0].latency.p50_ms - $a[0].latency.p50_ms) * 10 | round / 10) ms, p99 +\(($b[0].latency.p99_ms - $a[0].latency.p99_ms) * 10 | round / 10) ms, connect p50 +\(($b[0].connect.p50_ms - $a[0].connect.p50_ms) * 10 | round / 10) ms"'
  done
  kill "$proxy" "$server"
  wait "$proxy" "$server" 2>/dev/null || true
done
echo "logs and results: $tmp"
