#!/usr/bin/env bash
# Runs `homeport demo` from a fresh checkout: installs the C libraries,
# builds in release mode, and replays the Mooncake trace through three
# regions in one process. Arguments are passed to `homeport demo`
# (try --help, or --limit 1000 for a quick run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build -c release --product homeport >&2
exec .build/release/homeport demo "$@"
