#!/usr/bin/env bash
# Measures the floor of the answer workload's TTFT on this machine (issue
# 13) beside what bin/server and bin/loadgen reach: bin/answerfloor is a
# bare TCP client and server with the same schedule (Poisson arrivals,
# think, chunks on the same timer alarm) and nothing else, so its TTFT
# over think is what the machine's wake-ups and scheduling alone add. The
# runs are interleaved, floor then sse, ws and poll, round after round, so
# that a noisy minute lands on all of them; each line is one run's TTFT
# over think (p50, p99, max) and p99 of its first part, the request's way
# to the server; the last lines are the medians of the TTFT p99s.
# Usage: scripts/answer-floor.sh [answers-in-flight] [rounds]   (default 100 3)
# Run `make build` first. Servers on CPU 0, clients on CPU 1 (when there are two).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-100}
rounds=${2:-3}
warmup=2s duration=8s
tmp=$(mktemp -d)
. scripts/lib.sh "client"
port=$((20000 + RANDOM % 20000))
declare -A p99s

wait_port() { # port
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
  echo "nothing listens on port $1"; exit 1
}
record() { # name p50 p99 max (ms over think) to-server-p99 (ms)
  printf "%-6s TTFT over think: p50 %6.3f  p99 %6.3f  max %7.3f ms; to the server p99 %6.3f ms\n" "$1" "$2" "$3" "$4" "$5"
  p99s[$1]+="$3 "
}

for round in $(seq "$rounds"); do
  echo "round $round of $rounds ($clients answers in flight)"
  port=$((port + 1))
  "${pin_server[@]}" bin/answerfloor -serve -addr "127.0.0.1:$port" &
  spid=$!; pids+=("$spid")
  wait_port "$port"
  "${pin_client[@]}" bin/answerfloor -addr "127.0.0.1:$port" -clients "$clients" \
    -warmup "$warmup" -duration "$duration" >"$tmp/floor.txt"
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
  read -r p50 p99 max to_server < <(awk '/^TTFT-think/ {t = $3 " " $7 " " $9} /^send/ {s = $7} END {print t, s}' "$tmp/floor.txt")
  record floor "$p50" "$p99" "$max" "$to_server"
  for tr in sse ws poll; do
    port=$((port + 1))
    "${pin_server[@]}" bin/server -transport "$tr" -addr "127.0.0.1:$port" -log warn 2>"$tmp/server-$tr.log" &
    spid=$!; pids+=("$spid")
    wait_port "$port"
    "${pin_client[@]}" bin/loadgen -workload answer -transport "$tr" -url "http://127.0.0.1:$port" \
      -clients "$clients" -warmup "$warmup" -duration "$duration" -quiet -out "$tmp/$tr.json" >"$tmp/$tr.txt" 2>&1
    kill "$spid"; wait "$spid" 2>/dev/null || true
    # TTFT and think from the result (indented JSON: one key per line).
    read -r p50 p99 max to_server < <(awk -F'[:,]' '
      /"think_ms"/ {think = $2}
      /"ttft": \{/ {in_ttft = 1}
      in_ttft && /"p50_ms"/ {p50 = $2}
      in_ttft && /"p99_ms"/ {p99 = $2}
      in_ttft && /"max_ms"/ {max = $2; in_ttft = 0}
      /"to_server": \{/ {in_to = 1}
      in_to && /"p99_ms"/ {to = $2; in_to = 0}
      END {printf "%.3f %.3f %.3f %.3f\n", p50 - think, p99 - think, max - think, to}' "$tmp/$tr.json")
    record "$tr" "$p50" "$p99" "$max" "$to_server"
  done
done
echo "medians of the p99s over think ($rounds rounds):"
for name in floor sse ws poll; do
  printf "%-6s %s ms\n" "$name" "$(tr ' ' '\n' <<<"${p99s[$name]}" | awk 'NF' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')"
done
