#!/usr/bin/env bash
# Usage ingestion throughput over HTTP (POST /v1/usage), end to end: JSON parsing,
# validation, attribution to the paid period, one INSERT .. ON CONFLICT for the
# events and one upsert of the pre-aggregated counters per call, commit.
#
# It builds the release API, seeds CUSTOMERS (default 1000) customers with an active
# subscription to a plan with two metrics (a counter and a gauge), and sends EVENTS
# events (unique ids) in batches of 1, 100 and 10 000 from CLIENTS (default 4)
# concurrent keep-alive connections, then prints events/s per batch size with the
# machine's busy CPU per event while sending (µs: API, PostgreSQL and the client
# together; it follows the host's speed of the moment too, so compare builds in runs
# side by side),
# and checks that the counters add up to what was sent.
#
# STORED=N first stores N older events (metric `stored`, an earlier period, no
# counters) so the rate can be compared with an empty table (issue 15, part 5).
# STORED_IN=previous (default) stores them as received on 2026-03-30: the previous
# key generation, which every new id is looked up in; STORED_IN=current as received
# on 2026-04-20, the generation new ids are inserted into (the worst case: a full
# 35 days of ids in one index); STORED_IN=old as received on 2026-02-10, two
# generations back: past the de-duplication window, so (as the worker's upkeep does)
# only the events are kept, not their ids.
# With STORED_IN=previous (stored ids or none) the worker's upkeep (`billing-worker
# upkeep`) then builds generation 586's key filter, as it would two days into the
# run's generation, so new ids skip their lookup there; KEY_FILTER=0 leaves it out,
# so both ways run on one build.
# Event ids, stored and sent, are MD5 hex strings: spread over the key space as
# products' own ids are, so every insert lands on a random page of the id index.
#
# PROFILE=1 writes pg_stat_statements per call to .run/bench/usage-statements.txt.
#
# usage: bench/usage.sh [BATCH ...]      env: NO_BUILD=1 (the release API and worker already built) EVENTS=200000 CLIENTS=4 CUSTOMERS=1000 STORED=0 STORED_IN=previous|current|old KEY_FILTER=1
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_toolchain
ensure_services
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1 100 10000)
EVENTS="${EVENTS:-200000}" CLIENTS="${CLIENTS:-4}" CUSTOMERS="${CUSTOMERS:-1000}" STORED="${STORED:-0}"
case "${STORED_IN:-previous}" in
  # KEYED: whether the stored ids' key generation is still within the window
  # (generation 585 has no keys left when the run's clock stands in 587).
  previous) STORED_DAY=2026-03-30 STORED_GEN=586 KEYED=1 ;;
  current) STORED_DAY=2026-04-20 STORED_GEN=587 KEYED=1 ;;
  old) STORED_DAY=2026-02-10 STORED_GEN=585 KEYED=0 ;;
  *) echo "STORED_IN: previous, current or old" >&2; exit 2 ;;
esac
if [ -z "${NO_BUILD:-}" ]; then
  log "building the release API and worker"
  cargo build --release --quiet -p billing-api -p billing-worker
fi
DB=billing_bench_usage
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export BILLING_ADMIN_TOKEN="bench-operator-token-0123456789"
export BILLING_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)"
export BILLING_TEST_CLOCK=1 BILLING_LOG_FORMAT=text RUST_LOG=warn BILLING_RATE_LIMIT_PER_SECOND=0
API_PORT=18081
API="http://127.0.0.1:$API_PORT"
source bench/lib.sh

fresh_db "$DB"
target/release/billing-api migrate
BILLING_API_ADDR="127.0.0.1:$API_PORT" BILLING_DB_POOL_SIZE=8 target/release/billing-api >.run/bench/usage-api.log 2>&1 &
api=$!; pids+=($api)
wait_port "$API_PORT" api 30
curl -sf -X POST "$API/v1/admin/clock" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -d '{"now":"2026-05-01T09:00:00Z"}' >/dev/null
tenant=$(curl -sf -X POST "$API/v1/admin/tenants" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -d '{
  "name":"WhatsMonster (bench)","time_zone":"Europe/Moscow",
  "gateway":{"kind":"cloudpayments","public_id":"pk_bench","api_secret":"bench-secret"}}')
tid=$(echo "$tenant" | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
key=$(echo "$tenant" | python3 -c "import json,sys; print(json.load(sys.stdin)['api_key'])")
curl -sf -X POST "$API/v1/plans" -H "Authorization: Bearer $key" -d '{"code":"PRO","name":"PRO",
  "price":{"value":"1390.00","currency":"RUB"},"period":{"unit":"month","count":1},"auto_renew":true,
  "quotas":{"messages":{"limit":100000000,"mode":"overage","unit_price":{"value":"0.05","currency":"RUB"}},
            "accounts":{"limit":10,"mode":"block","kind":"gauge"}}}' >/dev/null
log "seeding $CUSTOMERS customers with an active subscription"
q -v tid="$tid" -v n="$CUSTOMERS" <<'SQL'
SELECT p.id AS plan_id, pp.id AS price_id FROM plans p JOIN plan_prices pp ON pp.plan_id = p.id \gset
INSERT INTO customers (id, tenant_id, external_id, email, time_zone, created_at)
  SELECT gen_random_uuid(), :'tid', 'bench-' || g, 'c' || g || '@example.ru', 'Europe/Moscow', '2026-04-01T09:00:00Z'
  FROM generate_series(1, :n) g;
INSERT INTO subscriptions (id, tenant_id, customer_id, plan_id, status, auto_renew, current_period_start, current_period_end,
    anchor_at, paid_amount, price_id, next_charge_at, due_at, created_at)
  SELECT gen_random_uuid(), :'tid', id, :'plan_id', 'active', true, '2026-04-20T09:00:00Z', '2026-05-20T09:00:00Z',
         '2026-04-20T09:00:00Z', 1390.00, :'price_id', '2026-05-20T09:00:00Z', '2026-05-17T09:00:00Z', '2026-04-20T09:00:00Z'
  FROM customers;
ANALYZE;
SQL
q -c "SELECT id FROM customers" > .run/bench/usage-customers.txt
# The partitions the worker's upkeep would have made: the days and key generations
# of the stored events and of the run (the clock stands at 2026-05-01, generation 587).
q -c "SELECT usage_partitions_prepare('$STORED_DAY', $STORED_GEN, '2025-01-01')" \
  -c "SELECT usage_partitions_prepare('2026-05-01', 587, '2025-01-01')" >/dev/null
if [ "$STORED" -gt 0 ]; then
  log "storing $STORED older events first (received $STORED_DAY, key generation $STORED_GEN)"
  # The generation's unique hash index is built once the keys are in (faster than
  # entry by entry), as migration 000026 builds it.
  [ "$KEYED" = 0 ] || q -c "ALTER TABLE usage_event_keys_$STORED_GEN DROP CONSTRAINT usage_event_keys_${STORED_GEN}_key" >/dev/null
  for ((from = 1; from <= STORED; from += 5000000)); do
    to=$((from + 5000000 - 1)); [ "$to" -le "$STORED" ] || to=$STORED
    q -v tid="$tid" -v lo="$from" -v hi="$to" -v n="$CUSTOMERS" -v day="$STORED_DAY" -v gen="$STORED_GEN" \
      -v keyed="$KEYED" <<'SQL'
INSERT INTO usage_events (tenant_id, event_id, customer_id, subscription_id, metric, quantity, occurred_at, period_start,
    received_at)
  SELECT :'tid', md5('stored-' || g), s.customer_id, s.id, 'stored', 1, '2026-03-30T09:00:00Z', '2026-03-20T09:00:00Z',
         (:'day')::date + time '09:00'
  FROM generate_series(:lo, :hi) g
  JOIN (SELECT id, customer_id, row_number() OVER (ORDER BY id) - 1 AS k FROM subscriptions) s ON s.k = g % :n;
INSERT INTO usage_event_keys (generation, key)
  SELECT :gen, usage_event_key(:'tid', md5('stored-' || g)) FROM generate_series(:lo, :hi) g WHERE :keyed = 1;
SQL
  done
  [ "$KEYED" = 0 ] || q -c "SELECT usage_keys_unique('usage_event_keys_$STORED_GEN')" >/dev/null
  q -c "VACUUM ANALYZE usage_events" -c "VACUUM ANALYZE usage_event_keys" >/dev/null
fi
if [ "$STORED_GEN" = 586 ] && [ "${KEY_FILTER:-1}" != 0 ]; then
  log "building generation 586's key filter (billing-worker upkeep)"
  started=$(date +%s%N)
  RUST_LOG=info target/release/billing-worker upkeep 2>&1 | grep 'key filter' || true
  q -c "SELECT 'key filter: generation ' || generation || ', ' || keys || ' keys, ' || length(bits) || ' bytes, built in $(( ($(date +%s%N) - started) / 1000000 )) ms' FROM usage_key_filters"
fi
# The seeding's WAL would otherwise start checkpoints that run into the measurement
# (as in renewals.sh).
q -c "CHECKPOINT" >/dev/null

: > .run/bench/usage-rows.txt
stmt_reset
for b in "${sizes[@]}"; do
  log "sending $EVENTS events in batches of $b from $CLIENTS connections"
  python3 - "$API_PORT" "$key" "$b" "$EVENTS" "$CLIENTS" .run/bench/usage-customers.txt >> .run/bench/usage-rows.txt <<'PY'
import hashlib, http.client, json, sys, threading, time
port, key, batch, total, clients, cfile = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
customers = [l.strip() for l in open(cfile) if l.strip()]
calls = max(1, total // batch)
if batch == 1:
    calls = min(calls, 20000)  # single events are bounded by commits per second
sent = calls * batch
def body(call):
    evs = []
    for i in range(batch):
        n = call * batch + i
        c = customers[n % len(customers)]
        # Ids spread over the key space as products' own ids (UUIDs) are, not in one range.
        eid = hashlib.md5(f"b{batch}-{n}".encode()).hexdigest()
        if n % 10 == 9:
            evs.append({"event_id": eid, "customer_id": c, "metric": "accounts", "quantity": n % 7, "occurred_at": "2026-04-30T09:00:00Z"})
        else:
            evs.append({"event_id": eid, "customer_id": c, "metric": "messages", "quantity": 1, "occurred_at": "2026-04-30T09:00:00Z"})
    return json.dumps({"events": evs}).encode()
bodies = [body(i) for i in range(calls)]
accepted = [0] * clients
errors = []
def worker(k):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(k, calls, clients):
        conn.request("POST", "/v1/usage", bodies[i], {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = conn.getresponse(); data = r.read()
        if r.status != 200:
            errors.append((r.status, data[:200])); continue
        res = json.loads(data)
        accepted[k] += res["accepted"]
        if res["rejected"]:
            errors.append(res["rejected"][:3])
def busy():  # the machine's busy ticks (1/100 s), as bench/lib.sh's busy_ticks
    f = open("/proc/stat").readline().split()
    return sum(int(f[i]) for i in (1, 2, 3, 6, 7))
threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
b0 = busy()
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
secs = time.perf_counter() - t0
cpu_us = (busy() - b0) * 10000 / sent
if errors:
    print("errors:", errors[:3], file=sys.stderr); sys.exit(1)
print(f"| {batch:>6} | {calls:>7} | {sent:>8} | {sum(accepted):>8} | {secs:>7.2f} | {calls/secs:>9.0f} | {sent/secs:>9.0f} | {cpu_us:>6.2f} |")
PY
done
stmt_top .run/bench/usage-statements.txt "$(awk -F'|' '{calls += $3} END {print calls}' .run/bench/usage-rows.txt)"
messages=$(q -c "SELECT coalesce(sum(used), 0) FROM usage_counters WHERE metric = 'messages'")
events=$(q -c "SELECT count(*) FROM usage_events WHERE metric = 'messages'")
echo
filtered=$(q -c "SELECT count(*) FROM usage_key_filters")
echo "Usage ingestion over HTTP ($CLIENTS connections, $CUSTOMERS customers, $STORED events stored before (${STORED_IN:-previous} key generation, $filtered key filter); each call one transaction)"
printf '| %6s | %7s | %8s | %8s | %7s | %9s | %9s | %6s |\n' "batch" "calls" "events" "accepted" "seconds" "calls/s" "events/s" "CPU µs"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------" "---------" "----------" "----------" "---------" "-----------" "-----------" "--------"
cat .run/bench/usage-rows.txt
echo
echo "API peak RSS MB: $(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$api/status")"
echo "check: counter events stored = $events, sum of counters = $messages (must be equal)"
machine_line
