#!/usr/bin/env bash
# Runs `homeport bench` from a fresh checkout and draws its plots: installs
# the C libraries, etcd and Redis (scripts/setup.sh) and matplotlib (pip),
# builds in release mode, runs the benchmark with the given arguments, and
# writes the PNG plots next to the result files.
#
# usage: scripts/bench.sh [homeport bench options]   (try --help)
# The plots go to the --output directory (default bench-results).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "bench: installing matplotlib for the plots" >&2
    python3 -m pip install --quiet matplotlib
fi
swift build -c release --product homeport >&2

output=bench-results
arguments=("$@")
for ((index = 0; index < ${#arguments[@]}; index++)); do
    if [ "${arguments[index]}" = "--output" ] && ((index + 1 < ${#arguments[@]})); then
        output=${arguments[index + 1]}
    fi
    if [ "${arguments[index]}" = "--help" ]; then exec .build/release/homeport bench --help; fi
done

status=0
.build/release/homeport bench "$@" || status=$?
if [ -f "$output/samples.csv" ]; then
    python3 scripts/plot-benchmarks.py "$output" "$output"
fi
exit $status
