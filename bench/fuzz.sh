#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes (CloudPayments notifications in form and
# JSON, money and unit prices, usage batches, ATOL report answers, YooKassa
# notifications and objects): EXECUTIONS seeded inputs each (default 10 000 000),
# mutations of real examples and random bytes; prints a table of executions and
# panics. Not a test: it runs as long as it needs.
#
# usage: bench/fuzz.sh [EXECUTIONS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_toolchain
log "building the fuzz harness (release)"
cargo build --release --quiet -p billing-tests --bin fuzz-parsers
target/release/fuzz-parsers "${1:-10000000}" "${2:-1}"
