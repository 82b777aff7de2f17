#!/usr/bin/env bash
# Runs a three-region Homeport cluster on this machine from a fresh
# checkout: installs redis-server, etcd and the C libraries, builds in
# release mode, and calls `homeport cluster COMMAND`. Per region it starts
# a redis-server, an etcd member behind a delay proxy and `homeport serve`,
# all on 127.0.0.1.
#
#   scripts/cluster.sh up                      start and print the URLs
#   scripts/cluster.sh replay --limit 1000     replay the Mooncake trace through it
#   scripts/cluster.sh status                  list the processes
#   scripts/cluster.sh down                    stop everything, remove the directory
#
# Without --dir the cluster lives in $HOMEPORT_CLUSTER_DIR, or
# ${TMPDIR:-/tmp}/homeport-cluster. Run `scripts/cluster.sh up --help` for
# every option.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# == 0)); then
    echo "usage: scripts/cluster.sh up|down|status|replay [options]" >&2
    exit 2
fi

scripts/setup.sh
swift build -c release --product homeport >&2

arguments=("$@")
if [[ " ${arguments[*]} " != *" --dir "* && " ${arguments[*]} " != *" --dir="* && " ${arguments[*]} " != *" --help "* ]]; then
    arguments+=(--dir "${HOMEPORT_CLUSTER_DIR:-${TMPDIR:-/tmp}/homeport-cluster}")
fi
exec .build/release/homeport cluster "${arguments[@]}"
