#!/usr/bin/env bash
# The fault-injection run (issue 14, part 2): two API and two worker replicas
# (release builds) on one fresh database and broker vhost serve a mixed wave —
# purchases through the CloudPayments simulator's widget, usage batches, two
# renewals with scripted declines and lost answers plus dunning retries, refunds,
# ATOL receipts — while a seeded injector SIGKILLs workers (>= 20) and APIs
# (>= 10), restarts the RabbitMQ node and PostgreSQL once each and scripts provider
# faults. After the work settles, `billing-api audit` and the run's own checks
# (one capture per payment, provider refunds = booked refunds, one fiscal
# registration per receipt, usage stored once, nothing unresolved without a dead
# letter) must find no breach. Prints a table; exits 1 on a breach. Not a test.
#
# It restarts the machine's PostgreSQL and RabbitMQ: run nothing else against them.
# usage: bench/chaos.sh [--seed N] [--customers N]     env: NO_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_toolchain
ensure_services
if [ -z "${NO_BUILD:-}" ]; then
  log "building release binaries"
  cargo build --release --quiet -p billing-api -p billing-worker -p billing-tests --bins
fi
DB=billing_chaos
psql -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
rabbitmqctl -q delete_vhost "$DB" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$DB" >/dev/null
rabbitmqctl -q set_permissions -p "$DB" guest '.*' '.*' '.*' >/dev/null
rm -rf .run/chaos && mkdir -p .run/chaos
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$DB"
export BILLING_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)"
target/release/billing-api migrate
log "running (logs in .run/chaos/)"
status=0
target/release/chaos "$@" || status=$?
rabbitmqctl -q delete_vhost "$DB" >/dev/null 2>&1 || true
exit $status
