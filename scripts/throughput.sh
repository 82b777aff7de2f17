#!/usr/bin/env bash
# Measures one Homeport node's session API throughput next to redis-benchmark
# on the Redis commands at the core of the same operations, on this machine.
#
# It starts a redis-server and one `homeport serve --redis` node on free
# loopback ports, runs `homeport load` (append, read) and redis-benchmark
# (RPUSH of a turn-sized value, LRANGE of the last two) at each connection
# count, prints a Markdown table, and stops both servers by process id.
#
# usage: scripts/throughput.sh [CONNECTIONS...]   (default: 1 16 64)
# Environment: DURATION (seconds per homeport run, default 10),
# REQUESTS (per redis-benchmark run, default 200000), CONTENT_BYTES (256).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=("$@")
if ((${#connections[@]} == 0)); then connections=(1 16 64); fi
duration=${DURATION:-10}
requests=${REQUESTS:-200000}
content_bytes=${CONTENT_BYTES:-256}

scripts/setup.sh
swift build -c release --product homeport >&2
homeport=.build/release/homeport

work=$(mktemp -d "${TMPDIR:-/tmp}/homeport-throughput.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {
    local what=$1 check=$2
    for _ in $(seq 1 100); do
        if eval "$check" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "throughput: $what did not start; see $work" >&2
    exit 1
}

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly yes --appendfsync everysec \
    --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for "redis-server" "redis-cli -p $redis_port ping"

node_port=$(free_port)
cat >"$work/topology.json" <<JSON
{"regions": [{"name": "us-east", "host": "127.0.0.1", "port": $node_port}],
 "latency": {"jitterFraction": 0, "oneWayMilliseconds": []}}
JSON
"$homeport" serve --topology "$work/topology.json" --redis "127.0.0.1:$redis_port" --log-level error \
    >"$work/serve.log" 2>&1 &
pids+=($!)
wait_for "homeport serve" "curl -sf http://127.0.0.1:$node_port/healthz"

value=$(head -c "$content_bytes" </dev/zero | tr '\0' x)
redis_rate() {
    # Prints "ops/s p50 p99" from redis-benchmark's CSV line.
    redis-benchmark -p "$redis_port" -c "$1" -n "$requests" -r 10000 --csv "${@:2}" |
        tail -1 | tr -d '"' | awk -F, '{printf "%.0f %s %s", $2, $5, $7}'
}
homeport_rate() {
    "$homeport" load --target "127.0.0.1:$node_port" --connections "$1" --operation "$2" --duration-s "$duration" \
        --content-bytes "$content_bytes" --json |
        python3 -c 'import json, sys; r = json.load(sys.stdin); l = r["latency"]; print("%.0f %.3f %.3f" % (r["operationsPerSecond"], l["p50Milliseconds"], l["p99Milliseconds"]))'
}

echo "Machine: $(nproc) cores; Redis $(redis-server --version | awk '{print $3}'); turn content $content_bytes bytes"
echo ""
echo "| connections | operation | homeport ops/s | p50 ms | p99 ms | redis-benchmark command | ops/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
for count in "${connections[@]}"; do
    read -r h_rate h_p50 h_p99 <<<"$(homeport_rate "$count" append)"
    read -r r_rate r_p50 r_p99 <<<"$(redis_rate "$count" RPUSH "turns:__rand_int__" "$value")"
    echo "| $count | append turn | $h_rate | $h_p50 | $h_p99 | RPUSH ${content_bytes} B | $r_rate | $r_p50 | $r_p99 |"
    read -r h_rate h_p50 h_p99 <<<"$(homeport_rate "$count" read)"
    read -r r_rate r_p50 r_p99 <<<"$(redis_rate "$count" LRANGE "turns:__rand_int__" -2 -1)"
    echo "| $count | read tail (2 turns) | $h_rate | $h_p50 | $h_p99 | LRANGE -2 -1 | $r_rate | $r_p50 | $r_p99 |"
done
