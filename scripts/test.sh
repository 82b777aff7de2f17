#!/usr/bin/env bash
# Runs every test from a fresh checkout: installs the C libraries, checks
# formatting with swift-format, then builds and runs the Swift test suites.
# The trace tests read ../shared/data/mooncake/conversation_trace.jsonl, or
# the file that HOMEPORT_TRACE names.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift format lint --strict --recursive Sources Tests
swift build --build-tests
swift test --skip-build "$@"
