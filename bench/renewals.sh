#!/usr/bin/env bash
# Renewal throughput, end to end against the CloudPayments and YooKassa simulators.
#
# For each gateway (GATEWAYS, default "cloudpayments yookassa") and each size N
# (default 10000 and 100000) it builds a fresh database with N
# subscriptions due at one instant plus IDLE (default 1 000 000) subscriptions due
# weeks later, starts the release binaries (API, worker, simulator), moves the test
# clock to the due instant, and measures until every due subscription has a
# succeeded renewal payment: renewals/s, and the worker's peak RSS. The idle rows
# show that the scheduler's cost does not grow with what is stored. In the same run
# pgbench measures a payment-shaped durable transaction on this machine: the
# ceiling (a renewal commits about twice). With FISCAL=1 the tenant sends 54-FZ
# receipts: each renewal's income receipt is registered with the ATOL simulator,
# and the run ends when every one is registered.
#
# usage: bench/renewals.sh [N ...]      env: IDLE=1000000 NOTIFY=0 (simulator notifications)
#        GATEWAYS="cloudpayments yookassa" FISCAL=1
#        SEED_IDS=v4 seeds random ids (default v7: time-ordered, as the service makes them)
#        NO_BUILD=1 uses the release binaries already built
#        WORKER_POOL=4 (the worker's BILLING_DB_POOL_SIZE: 8 renewed about a fifth faster but its
#        RSS grew 24 % from 10 000 to 100 000 due, 16 no faster and 20 MB more; bench/README)
#        MALLOC_ARENA_MAX=2 (glibc, as deploy/k8s/worker.yaml runs the worker; bench/README, "The worker's memory")
#        WORKER_WRAP='heaptrack -o /tmp/w' runs the worker under a profiler (its RSS column is then the
#        wrapper's; the run stops the worker, and heaptrack finishes its file on its own)
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_toolchain
ensure_services
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
IDLE="${IDLE:-1000000}"
if [ -z "${NO_BUILD:-}" ]; then
  log "building release binaries"
  cargo build --release --quiet -p billing-api -p billing-worker -p billing-tests --bins
fi
BIN=target/release
DB=billing_bench
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$DB"
export BILLING_ADMIN_TOKEN="bench-operator-token-0123456789"
export BILLING_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)"
export BILLING_TEST_CLOCK=1 BILLING_LOG_FORMAT=text RUST_LOG=warn BILLING_RATE_LIMIT_PER_SECOND=0
API_PORT=18080 SIM_PORT=18091 ATOL_PORT=18092 YK_PORT=18093 METRICS_PORT=19090
FISCAL="${FISCAL:-0}"
GATEWAYS="${GATEWAYS:-cloudpayments yookassa}"
API="http://127.0.0.1:$API_PORT"
DUE="2026-06-01T09:00:00Z"
SEED_IDS="${SEED_IDS:-v7}"
case "$SEED_IDS" in v4|v7) ;; *) echo "SEED_IDS must be v4 or v7, not $SEED_IDS" >&2; exit 2 ;; esac

source bench/lib.sh

run_size() { # GATEWAY N
  local gw=$1 n=$2
  fresh_db "$DB"
  # A broker vhost of its own, fresh each run: no message of an earlier (aborted) run
  # is consumed in this one.
  rabbitmqctl -q delete_vhost "$DB" >/dev/null 2>&1 || true
  rabbitmqctl -q add_vhost "$DB" >/dev/null
  rabbitmqctl -q set_permissions -p "$DB" guest '.*' '.*' '.*' >/dev/null
  $BIN/billing-api migrate
  [ -n "${PG_LOG_MS:-}" ] && psql -h 127.0.0.1 -U postgres -qAt -c "ALTER DATABASE $DB SET log_min_duration_statement = ${PG_LOG_MS}"
  SIM_ADDR="127.0.0.1:$SIM_PORT" SIM_YOOKASSA_ADDR="127.0.0.1:$YK_PORT" SIM_ATOL_ADDR="127.0.0.1:$ATOL_PORT" SIM_ACCEPT_ANY_TOKEN=1 SIM_TOKEN_NOTIFICATIONS="${NOTIFY:-0}" \
    $BIN/provider-sim >.run/bench/sim.log 2>&1 & pids+=($!)
  BILLING_API_ADDR="127.0.0.1:$API_PORT" $BIN/billing-api >.run/bench/api.log 2>&1 & pids+=($!)
  wait_port "$API_PORT" api 30; wait_port "$SIM_PORT" simulator 30; wait_port "$YK_PORT" "YooKassa simulator" 30
  wait_port "$ATOL_PORT" "ATOL simulator" 30
  local fiscal=null
  if [ "$FISCAL" = 1 ]; then
    curl -sf -X POST "http://127.0.0.1:$ATOL_PORT/sim/atol/accounts" -H 'content-type: application/json' \
      -d '{"login":"bench-login","password":"bench-pass","group_code":"bench-group"}'
    fiscal="{\"inn\":\"7704211201\",\"sno\":\"osn\",\"vat\":\"vat22\",\"settlement_sign\":\"full_payment\",
      \"payment_object\":4,\"payment_address\":\"https://orbita.example.ru\",\"email\":\"b@orbita.example.ru\",
      \"provider\":{\"login\":\"bench-login\",\"password\":\"bench-pass\",\"group_code\":\"bench-group\",
      \"api_url\":\"http://127.0.0.1:$ATOL_PORT/possystem/v5/\"}}"
  fi
  curl -sf -X POST "$API/v1/admin/clock" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -d "{\"now\":\"2026-05-01T09:00:00Z\"}" >/dev/null
  local gateway
  case "$gw" in
    cloudpayments) gateway="{\"kind\":\"cloudpayments\",\"public_id\":\"pk_bench\",\"api_secret\":\"bench-secret\",\"api_url\":\"http://127.0.0.1:$SIM_PORT\"}" ;;
    yookassa) gateway="{\"kind\":\"yookassa\",\"shop_id\":\"bench-shop\",\"api_secret\":\"bench-secret\",\"api_url\":\"http://127.0.0.1:$YK_PORT/v3/\",\"notification_ips\":[\"127.0.0.0/8\"]}" ;;
    *) log "unknown gateway $gw"; return 1 ;;
  esac
  local tenant; tenant=$(curl -sf -X POST "$API/v1/admin/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -d "{
    \"name\":\"Orbita (bench)\",\"time_zone\":\"Europe/Moscow\",\"gateway\":$gateway,\"fiscal\":$fiscal,
    \"policy\":{\"renewal_notice_days\":3,\"dunning_retry_days\":[1,3,5]}}")
  local tid key; tid=$(echo "$tenant" | json "['id']"); key=$(echo "$tenant" | json "['api_key']")
  if [ "$gw" = yookassa ]; then
    curl -sf -X POST "http://127.0.0.1:$YK_PORT/sim/yookassa/shops" -H 'content-type: application/json' \
      -d "{\"shop_id\":\"bench-shop\",\"secret_key\":\"bench-secret\",\"notification_url\":\"$API/v1/webhooks/yookassa/$tid\"}"
  else
    curl -sf -X POST "http://127.0.0.1:$SIM_PORT/sim/sites" -H 'content-type: application/json' \
      -d "{\"public_id\":\"pk_bench\",\"api_secret\":\"bench-secret\",\"notify_base\":\"$API/v1/webhooks/cloudpayments/$tid\"}"
  fi
  curl -sf -X POST "$API/v1/plans" -H "Authorization: Bearer $key" \
    -d '{"code":"START","name":"START","price":{"value":"1990.00","currency":"RUB"},"period":{"unit":"month","count":1}}' >/dev/null
  log "$gw: seeding $n due and $IDLE idle subscriptions"
  q -v tid="$tid" -v n="$n" -v idle="$IDLE" -v due="$DUE" -v gw="$gw" -v seed_ids="$SEED_IDS" <<'SQL'
SELECT p.id AS plan_id, pp.id AS price_id FROM plans p JOIN plan_prices pp ON pp.plan_id = p.id \gset
-- ids as the service makes them (UUID v7, domain::ids): time-ordered by the instant a
-- row stands for (its first 48 bits), random after; one millisecond apart in seeding
-- order. With random (v4) ids, as seeded before, every index keyed by a customer or a
-- subscription took each renewal's entry on a random leaf page (bench/README, "Seeded
-- ids as the service makes them"); SEED_IDS=v4 seeds those.
SET bench.seed_ids = :'seed_ids';
CREATE FUNCTION pg_temp.uuid7(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN current_setting('bench.seed_ids') = 'v4' THEN gen_random_uuid() ELSE
    (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
     || substr(md5(random()::text), 1, 3) || to_hex(8 + floor(random() * 4)::int)
     || substr(md5(random()::text), 1, 15))::uuid END
$$;
INSERT INTO customers (id, tenant_id, external_id, email, time_zone, created_at)
  SELECT pg_temp.uuid7(timestamptz '2026-05-01T09:00:00Z' + g * interval '1 ms'), :'tid', 'bench-' || g, 'c' || g || '@example.ru', 'Europe/Moscow', '2026-05-01T09:00:00Z'
  FROM generate_series(1, :n + :idle) g;
INSERT INTO payment_methods (id, tenant_id, customer_id, gateway, token, created_at)
  SELECT pg_temp.uuid7(created_at + substr(external_id, 7)::int * interval '1 ms'), :'tid', id, :'gw', 'tk_bench_' || substr(external_id, 7), '2026-05-01T09:00:00Z' FROM customers;
-- every customer renewing has paid before: the posting of that payment opened their
-- pass-through ledger account (the id the service derives: UUID v5 in the OID namespace
-- of "<tenant>/customer_balance/<customer>/RUB", domain::ledger::Account::id)
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
INSERT INTO ledger_accounts (id, tenant_id, code, customer_id, currency, created_at)
  SELECT uuid_generate_v5(uuid_ns_oid(), :'tid' || '/customer_balance/' || id || '/RUB'), :'tid', 'customer_balance', id,
         'RUB', '2026-05-01T09:00:00Z'
  FROM customers;
-- renewal notices of the due period went out days ago (renewal_notice_for set here, not
-- by a later UPDATE that would move every due row to the table's end)
INSERT INTO subscriptions (id, tenant_id, customer_id, plan_id, status, auto_renew, current_period_start, current_period_end,
    anchor_at, paid_amount, price_id, next_charge_at, due_at, renewal_notice_for, created_at)
  SELECT pg_temp.uuid7(start + g * interval '1 ms'), :'tid', c.id, :'plan_id', 'active', true,
         start, start + interval '1 month', start, 1990.00, :'price_id', start + interval '1 month',
         start + interval '1 month' - CASE WHEN due THEN interval '0' ELSE interval '3 days' END,
         CASE WHEN due THEN start + interval '1 month' END, '2026-05-01T09:00:00Z'
  FROM (SELECT id, substr(external_id, 7)::int AS g, substr(external_id, 7)::int <= :n AS due,
               CASE WHEN substr(external_id, 7)::int <= :n THEN timestamptz :'due' - interval '1 month'
                    ELSE timestamptz :'due' + interval '20 days' - interval '1 month' END AS start
        FROM customers) c;
INSERT INTO subscription_notices SELECT id, 'subscription.renewal_upcoming', current_period_end, '2026-05-29T09:00:00Z'
  FROM subscriptions WHERE due_at = :'due';
-- what autovacuum would have done in the month the seeded rows stand for (this host's
-- PostgreSQL runs with autovacuum off): visibility maps set, statistics taken
VACUUM ANALYZE;
-- the seeding's writes flushed before the clock starts: its WAL would otherwise start
-- checkpoints (and their full-page writes) inside the measured run
CHECKPOINT;
SQL
  BILLING_WORKER_METRICS_ADDR="127.0.0.1:$METRICS_PORT" MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} BILLING_DB_POOL_SIZE=${WORKER_POOL:-4} BILLING_WORKER_PREFETCH=${PREFETCH:-512} \
    BILLING_SCHEDULER_INTERVAL_MS=20 BILLING_RELAY_INTERVAL_MS=5 \
    ${WORKER_WRAP:-} $BIN/billing-worker >.run/bench/worker.log 2>&1 & local worker=$!; pids+=($worker)
  wait_port "$METRICS_PORT" worker 30
  local t0 t1
  stmt_reset
  t0=$(date +%s.%N)
  curl -sf -X POST "$API/v1/admin/clock" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -d "{\"now\":\"$DUE\"}" >/dev/null
  local done=0 receipts=0 want_receipts=0
  [ "$FISCAL" = 1 ] && want_receipts=$n
  while [ "$done" -lt "$n" ] || [ "$receipts" -lt "$want_receipts" ]; do
    sleep 0.5
    kill -0 "$worker" 2>/dev/null || { log "worker died (see .run/bench/worker.log)"; return 1; }
    # The worker's own counters of captured charges and registered income receipts
    # until they reach N, then the database: counting the payments and receipts is a
    # scan of tables that grow and churn (up to half a second each; 0.7 ms of
    # PostgreSQL's time per renewal when it ran every poll, and a fifth of its time
    # while the receipts finished when it ran once the charges were done).
    local counters captured registered
    counters=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" || true)
    captured=$(awk '/^billing_charges_total\{outcome="captured"\}/ {printf "%d", $2}' <<<"$counters")
    registered=$(awk '/^billing_receipts_registered_total\{kind="income"\}/ {printf "%d", $2}' <<<"$counters")
    [ "${captured:-0}" -ge "$n" ] && [ "${registered:-0}" -ge "$want_receipts" ] || continue
    read -r done receipts < <(q -F ' ' -c "SELECT (SELECT count(*) FROM payments WHERE kind = 'renewal' AND status = 'succeeded'),
      (SELECT count(*) FROM receipts WHERE kind = 'income' AND status = 'registered')")
  done
  t1=$(date +%s.%N)
  local rss; rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$worker/status")
  local rate; rate=$(python3 -c "print(round($n/($t1-$t0)))")
  local secs; secs=$(python3 -c "print(round($t1-$t0, 1))")
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" > ".run/bench/metrics-$n.txt" || true
  local unbalanced; unbalanced=$(q -c "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0) s")
  local accounts; accounts=$(q -c "SELECT count(*) FROM ledger_accounts WHERE code = 'customer_balance'")
  [ "$accounts" = $((n + IDLE)) ] || log "warning: $accounts customer accounts after the run, $((n + IDLE)) seeded: the seeded ids are not the service's"
  local doubles; doubles=$(q -c "SELECT count(*) FROM (SELECT subscription_id FROM payments WHERE kind = 'renewal' GROUP BY subscription_id HAVING count(*) > 1) s")
  cleanup
  local fiscal_col="-"; [ "$FISCAL" = 1 ] && fiscal_col="$receipts"
  printf '| %13s | %8s | %9s | %7s | %11s | %13s | %10s | %14s | %17s |\n' "$gw" "$n" "$IDLE" "$secs" "$rate" "$rss" "$unbalanced" "$doubles" "$fiscal_col" >> .run/bench/rows.txt
}

: > .run/bench/rows.txt
for gw in $GATEWAYS; do for n in "${sizes[@]}"; do run_size "$gw" "$n"; done; done
ceiling=$(pg_ceiling)
echo
echo "Renewals end to end (scheduler -> outbox -> RabbitMQ -> charge against the simulator -> period, ledger, events)"
printf '| %13s | %8s | %9s | %7s | %11s | %13s | %10s | %14s | %17s |\n' "gateway" "due" "idle" "seconds" "renewals/s" "worker RSS MB" "unbalanced" "double charges" "receipts (ATOL)"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "---------------" "----------" "-----------" "---------" "-------------" "---------------" "------------" "----------------" "-------------------"
cat .run/bench/rows.txt
echo
echo "Ceiling: pgbench, payment-shaped durable transaction (insert payment, update subscription, 4 ledger entries, 2 outbox rows), 8 clients: ${ceiling} tx/s"
machine_line ", RabbitMQ $(rabbitmqctl version 2>/dev/null || echo '?')"
