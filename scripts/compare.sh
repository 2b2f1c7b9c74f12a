#!/bin/sh
# compare.sh: compare two bench runs with benchstat.
#
#   scripts/compare.sh [OLD NEW]
#
# OLD and NEW are result directories (results/<UTC timestamp>) or bench.txt
# files; without arguments, the two newest runs under results/. benchstat
# pairs the lines by name (scenario, transport, clients) and prints, per
# figure, the median of each run's repeats, the change, and a p-value; "~"
# means no significant difference. Repeats are the samples, so runs with
# -repeat 6 or more give benchstat enough to judge (it says when they do not).
set -eu

BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
results=${RESULTS:-results}

file() {
	if [ -d "$1" ]; then
		echo "$1/bench.txt"
	else
		echo "$1"
	fi
}

case $# in
0)
	# The two newest timestamped runs (names sort by time).
	set -- $(ls -d "$results"/2*/ 2>/dev/null | sort | tail -n 2)
	if [ $# -ne 2 ]; then
		echo "compare.sh: need two runs under $results/ (run make bench twice), or give OLD and NEW" >&2
		exit 2
	fi
	;;
2) ;;
*)
	echo "usage: scripts/compare.sh [OLD NEW]" >&2
	exit 2
	;;
esac

old=$(file "${1%/}")
new=$(file "${2%/}")
for f in "$old" "$new"; do
	if [ ! -f "$f" ]; then
		echo "compare.sh: $f: no such file" >&2
		exit 2
	fi
done
exec go run "$BENCHSTAT" "$old" "$new"
