#!/usr/bin/env bash
# One benchmark command (issue 15): builds the release binaries, measures
# PostgreSQL's own ceilings on this machine (pgbench select-only, a payment-shaped
# durable transaction, COPY of the rows usage ingestion writes) and, in the same run, every
# hot path — entitlement reads and CloudPayments Pay notifications (wrk), usage
# ingest (bench/usage.sh), renewals end to end (bench/renewals.sh) — and prints one
# table: throughput, p50/p99 latency, the ceiling, the ratio, and peak RSS. The
# read and webhook ceilings are measured right before and right after their path
# (the table shows the mean), and a second table gives CPU per operation of each
# wrk path and of its ceiling (machine busy time / operations). The test clock is
# off wherever the path allows (renewals need it to make periods due). Not a
# test: nothing asserts on time.
#
# usage: bench/all.sh          env: SECONDS_EACH=15 (each wrk/pgbench run)
#        ENT_CUSTOMERS=10000 WEBHOOK_N=30000 IDLE=1000000
#        RENEWAL_DUE=100000 RENEWAL_SMALL=10000 (a first run whose worker RSS the table compares)
#        RENEWAL_FISCAL=1 (0: a tenant without receipts)
#        RENEWAL_YOOKASSA=1 (0: no YooKassa row; 1: RENEWAL_DUE renewals again, with YooKassa)
#        USAGE_EVENTS=1000000 (events sent by the usage run: long enough to include checkpoints)
#        NO_BUILD=1 (use the release binaries already built)
#        PROFILE=1 (pg_stat_statements per operation into .run/bench/*-statements.txt)
#        ONLY="entitlements webhooks usage renewals" (a subset, e.g. while tuning one path)
#        AUTOGROUP=keep (leave the kernel's session autogroups on; bench/lib.sh turns them
#        off for the run when it may, and restores what it changed on exit)
#        API_POOL=8 (the API's BILLING_DB_POOL_SIZE, four per HTTP worker: 8 beat 4 on
#        both wrk paths, 16 had a long tail; bench/README "Connections, again")
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/lib.sh
ensure_toolchain
ensure_services
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null || { log "pgbench (postgresql-contrib) is needed"; exit 1; }
if [ -z "${NO_BUILD:-}" ]; then
  log "building release binaries"
  cargo build --release --quiet -p billing-api -p billing-worker -p billing-tests --bins
fi
BIN=target/release
DB=billing_bench_all
source bench/lib.sh
SECONDS_EACH="${SECONDS_EACH:-15}" ENT_CUSTOMERS="${ENT_CUSTOMERS:-10000}" WEBHOOK_N="${WEBHOOK_N:-30000}"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB${DB_OPTIONS:-}" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
export BILLING_ADMIN_TOKEN="bench-operator-token-0123456789"
export BILLING_SECRETS_KEY="$(head -c 32 /dev/urandom | base64)"
export BILLING_LOG_FORMAT=text RUST_LOG=warn BILLING_RATE_LIMIT_PER_SECOND=0
unset BILLING_TEST_CLOCK
API_PORT=18082
API="http://127.0.0.1:$API_PORT"
admin() { curl -sf -X POST "$API$1" -H "Authorization: Bearer $BILLING_ADMIN_TOKEN" -H 'content-type: application/json' -d "$2"; }
tenant_call() { curl -sf -X POST "$API$1" -H "Authorization: Bearer $key" -H 'content-type: application/json' -d "$2"; }
# wrk --latency output -> "req/s p50_ms p99_ms"
wrk_figures() {
  python3 -c '
import re, sys
text = sys.stdin.read()
def ms(v, unit): return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p = {k: ms(v, u) for k, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
print("%.0f %.2f %.2f" % (rps, p["50"], p["99"]))'
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
ONLY="${ONLY:-entitlements webhooks usage renewals}"
runs() { [[ " $ONLY " == *" $1 "* ]]; }

fresh_db "$DB"
$BIN/billing-api migrate
log "ceilings: pgbench select-only, payment-shaped transaction, COPY"
# CPU ms per transaction of the ceiling just measured (NAME: select_ceiling, pg_ceiling)
ceiling_ms() { ms_per_op "$(cat ".run/bench/$1.ticks")" "$(cat ".run/bench/$1.tx")"; }
if runs entitlements; then select_before=$(select_ceiling); select_ms_before=$(ceiling_ms select_ceiling); fi
if runs webhooks; then payment_before=$(pg_ceiling); payment_ms_before=$(ceiling_ms pg_ceiling); fi
if runs usage; then copy_rows=$(copy_ceiling 1000000); fi

BILLING_API_ADDR="127.0.0.1:$API_PORT" BILLING_DB_POOL_SIZE=${API_POOL:-8} $BIN/billing-api >.run/bench/all-api.log 2>&1 &
api=$!; pids+=($api)
wait_port "$API_PORT" api 30
tenant=$(admin /v1/admin/tenants '{"name":"Orbita (bench)","time_zone":"Europe/Moscow",
  "gateway":{"kind":"cloudpayments","public_id":"pk_bench","api_secret":"bench-secret"}}')
tid=$(echo "$tenant" | json "['id']"); key=$(echo "$tenant" | json "['api_key']")
tenant_call /v1/plans '{"code":"PRO","name":"PRO","price":{"value":"1390.00","currency":"RUB"},
  "period":{"unit":"month","count":1},"auto_renew":true,"quotas":{"messages":{"limit":100000,"mode":"block"}}}' >/dev/null

if runs entitlements; then
log "entitlements: $ENT_CUSTOMERS customers with an active subscription and usage"
q -v tid="$tid" -v n="$ENT_CUSTOMERS" <<'SQL'
SELECT p.id AS plan_id, pp.id AS price_id FROM plans p JOIN plan_prices pp ON pp.plan_id = p.id \gset
INSERT INTO customers (id, tenant_id, external_id, email, time_zone, created_at)
  SELECT gen_random_uuid(), :'tid', 'ent-' || g, 'e' || g || '@example.ru', 'Europe/Moscow', now() - interval '10 days'
  FROM generate_series(1, :n) g;
INSERT INTO subscriptions (id, tenant_id, customer_id, plan_id, status, auto_renew, current_period_start, current_period_end,
    anchor_at, paid_amount, price_id, next_charge_at, due_at, created_at)
  SELECT gen_random_uuid(), :'tid', id, :'plan_id', 'active', true, now() - interval '10 days', now() + interval '20 days',
         now() - interval '10 days', 1390.00, :'price_id', now() + interval '20 days', now() + interval '17 days',
         now() - interval '10 days'
  FROM customers WHERE external_id LIKE 'ent-%';
INSERT INTO usage_counters (subscription_id, period_start, metric, tenant_id, kind, used, peak)
  SELECT id, current_period_start, 'messages', tenant_id, 'counter', 42, 42 FROM subscriptions;
INSERT INTO usage_events (tenant_id, event_id, customer_id, subscription_id, metric, quantity, occurred_at, period_start,
    received_at)
  SELECT tenant_id, 'seed-' || id, customer_id, id, 'messages', 42, now() - interval '1 day', current_period_start,
         now() - interval '1 day'
  FROM subscriptions;
ANALYZE;
-- the ceilings' and this seeding's writes flushed before wrk starts, as renewals.sh
-- does after its seeding: the measured run does not pay for its setup's WAL (it did
-- not end the rare p99 stalls of 2026-12-04; bench/README, "The all.sh runs of 2026-12-04")
CHECKPOINT;
SQL
q -c "SELECT id FROM customers WHERE external_id LIKE 'ent-%'" > .run/bench/ent-customers.txt
stmt_reset
t0=$(busy_ticks)
CUSTOMERS=.run/bench/ent-customers.txt API_KEY="$key" \
  wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency -s bench/wrk/entitlements.lua "$API" > .run/bench/wrk-entitlements.txt
# the API's own view of the same requests (http_request_duration_seconds): tells the
# time spent in the service from the time wrk waited (bench/README, "The all.sh runs of 2026-12-04")
curl -s "$API/metrics" > .run/bench/api-metrics.txt
ent_ms=$(ms_per_op "$(( $(busy_ticks) - t0 ))" "$(awk '/requests in/ {print $1}' .run/bench/wrk-entitlements.txt)")
read -r ent_rps ent_p50 ent_p99 < <(wrk_figures < .run/bench/wrk-entitlements.txt)
stmt_top .run/bench/entitlements-statements.txt "$(awk '/requests in/ {print $1}' .run/bench/wrk-entitlements.txt)"
grep -q "Non-2xx" .run/bench/wrk-entitlements.txt && { log "entitlements: non-2xx answers"; cat .run/bench/wrk-entitlements.txt; exit 1; }
# The ceiling again right after the path, and the mean of both: the host's speed
# drifts within minutes, and the ratio should not follow when either ran.
select_after=$(select_ceiling); select_ms_after=$(ceiling_ms select_ceiling)
select_tps=$(( (select_before + select_after) / 2 ))
fi

if runs webhooks; then
log "webhooks: $WEBHOOK_N pending purchases, then their Pay notifications"
python3 - "$API_PORT" "$key" "$WEBHOOK_N" > .run/bench/confirmations.jsonl <<'PY'
import http.client, json, sys, threading
port, key, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
out, lock, failed = [], threading.Lock(), []
def worker(k, step):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for i in range(k, n, step):
        conn.request("POST", "/v1/customers", json.dumps({"external_id": f"wh-{i}", "email": f"w{i}@example.ru"}), h)
        r = conn.getresponse(); c = json.loads(r.read())
        conn.request("POST", "/v1/subscriptions", json.dumps({"customer_id": c["id"], "plan": "PRO"}), h)
        r = conn.getresponse(); body = json.loads(r.read())
        if r.status != 201: failed.append(body); continue
        with lock: out.append(json.dumps(body["payment"]["confirmation"]))
threads = [threading.Thread(target=worker, args=(k, 4)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if failed: print(failed[:2], file=sys.stderr); sys.exit(1)
print("\n".join(out))
PY
$BIN/bench-notifications bench-secret 3000000000 < .run/bench/confirmations.jsonl > .run/bench/notifications.txt
# the purchases' writes flushed before wrk starts, as for the entitlement reads
q -c "CHECKPOINT"
stmt_reset
t0=$(busy_ticks)
BODIES=.run/bench/notifications.txt NOTIFY_PATH="/v1/webhooks/cloudpayments/$tid/pay" WRK_THREADS=2 \
  wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency -s bench/wrk/notifications.lua "$API" > .run/bench/wrk-webhooks.txt
wh_ticks=$(( $(busy_ticks) - t0 ))
read -r _ wh_p50 wh_p99 < <(wrk_figures < .run/bench/wrk-webhooks.txt)
read -r applied wh_rate < <(q -F ' ' -c "SELECT count(*), round(count(*) / greatest(extract(epoch FROM max(captured_at) - min(captured_at)), 0.001))
  FROM payments WHERE kind = 'purchase' AND captured_at IS NOT NULL")
stmt_top .run/bench/webhooks-statements.txt "$applied"
wh_ms=$(ms_per_op "$wh_ticks" "$applied")
payment_after=$(pg_ceiling); payment_ms_after=$(ceiling_ms pg_ceiling)
payment_tps=$(( (payment_before + payment_after) / 2 ))
[ "$applied" -lt "$WEBHOOK_N" ] || log "webhooks: all $WEBHOOK_N notifications were applied before the run ended (raise WEBHOOK_N for a steady rate)"
fi
api_rss=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$api/status")
cleanup

if runs usage; then
log "usage ingest (bench/usage.sh 10000)"
NO_BUILD=1 EVENTS="${USAGE_EVENTS:-1000000}" bench/usage.sh 10000 > .run/bench/usage-out.txt
usage_rate=$(awk -F'|' '$2 ~ /^ *10000 *$/ {gsub(/ /, "", $8); print $8}' .run/bench/usage-out.txt)
usage_rss=$(awk '/API peak RSS/ {print $NF}' .run/bench/usage-out.txt)
fi

if runs renewals; then
# The issue's condition: 100 000 due beside 1 000 000 idle, a fiscal tenant (each
# renewal's receipt registered with the ATOL simulator); a 10 000-due run first, so
# that the worker's peak RSS can be compared (flat within 20 %).
renewal_small=${RENEWAL_SMALL:-10000} renewal_due=${RENEWAL_DUE:-100000} renewal_fiscal=${RENEWAL_FISCAL:-1}
renewal_sizes=("$renewal_small"); [ "$renewal_small" = "$renewal_due" ] || renewal_sizes+=("$renewal_due")
log "renewals (bench/renewals.sh ${renewal_sizes[*]}, ${IDLE:-1000000} idle, CloudPayments, FISCAL=$renewal_fiscal)"
NO_BUILD=1 FISCAL=$renewal_fiscal GATEWAYS=cloudpayments bench/renewals.sh "${renewal_sizes[@]}" > .run/bench/renewals-out.txt
# A column (5: seconds, 6: renewals/s, 7: worker RSS MB) of GATEWAY's row with N due: GATEWAY N COLUMN FILE
renewal_col() { awk -F'|' -v g="$1" -v n="$2" -v c="$3" '$2 ~ g && $3 + 0 == n {gsub(/ /, "", $c); print $c}' "$4"; }
renewal_ceiling_of() { awk -F': ' '/^Ceiling/ {print $NF}' "$1" | awk '{print $1}'; }
renewal_rate=$(renewal_col cloudpayments "$renewal_due" 6 .run/bench/renewals-out.txt)
worker_rss=$(renewal_col cloudpayments "$renewal_due" 7 .run/bench/renewals-out.txt)
small_rss=$(renewal_col cloudpayments "$renewal_small" 7 .run/bench/renewals-out.txt)
renewal_ceiling=$(renewal_ceiling_of .run/bench/renewals-out.txt)
# The same with YooKassa (issue 15, part 4), at the issue's size only: its own run,
# with the ceiling measured after it. RENEWAL_YOOKASSA=0 leaves it out.
renewal_yookassa=${RENEWAL_YOOKASSA:-1}
if [ "$renewal_yookassa" = 1 ]; then
  log "renewals (bench/renewals.sh $renewal_due, ${IDLE:-1000000} idle, YooKassa, FISCAL=$renewal_fiscal)"
  NO_BUILD=1 FISCAL=$renewal_fiscal GATEWAYS=yookassa bench/renewals.sh "$renewal_due" > .run/bench/renewals-yookassa-out.txt
  yk_rate=$(renewal_col yookassa "$renewal_due" 6 .run/bench/renewals-yookassa-out.txt)
  yk_rss=$(renewal_col yookassa "$renewal_due" 7 .run/bench/renewals-yookassa-out.txt)
  yk_ceiling=$(renewal_ceiling_of .run/bench/renewals-yookassa-out.txt)
fi
fi

# One row of the table: path, throughput, p50, p99, ceiling, ceiling/s, ratio, target, RSS.
row() { printf '| %-60s | %12s | %7s | %7s | %-34s | %10s | %5s | %6s | %7s |\n' "$@"; }
echo
echo "Hot paths against PostgreSQL's own ceilings, same run ($(date -u +%F), ${SECONDS_EACH} s per wrk/pgbench run, test clock off but for renewals)"
echo
row path throughput "p50 ms" "p99 ms" ceiling "ceiling/s" ratio target "RSS MB"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------------------------------------------------------------" "--------------" "---------" "---------" "------------------------------------" "------------" "-------" "--------" "---------"
runs entitlements && row "GET entitlements (wrk, 16 connections)" "$ent_rps req/s" "$ent_p50" "$ent_p99" "pgbench select-only, 16 clients" "$select_tps" "$(ratio "$ent_rps" "$select_tps")" 0.35 "$api_rss"
runs webhooks && row "CloudPayments Pay applied (wrk, 16 conn.)" "$wh_rate /s" "$wh_p50" "$wh_p99" "pgbench payment-shaped tx, 8 clients" "$payment_tps" "$(ratio "$wh_rate" "$payment_tps")" 0.30 "$api_rss"
runs usage && row "usage ingest, 10 000-event batches" "$usage_rate ev/s" "-" "-" "COPY of the same rows, 4 sessions" "$copy_rows" "$(ratio "$usage_rate" "$copy_rows")" 0.50 "${usage_rss:--}"
runs renewals && row "renewals (CloudPayments), $renewal_due due + ${IDLE:-1000000} idle$([ "$renewal_fiscal" = 1 ] && echo ', fiscal')" "$renewal_rate /s" "-" "-" "pgbench payment-shaped tx, 8 clients" "$renewal_ceiling" "$(ratio "$renewal_rate" "$renewal_ceiling")" 0.45 "$worker_rss"
runs renewals && [ "$renewal_yookassa" = 1 ] && row "renewals (YooKassa), the same" "$yk_rate /s" "-" "-" "pgbench payment-shaped tx, 8 clients" "$yk_ceiling" "$(ratio "$yk_rate" "$yk_ceiling")" 0.45 "$yk_rss"
echo
runs webhooks && echo "Pay notifications applied: $applied of $WEBHOOK_N prepared (rate = applied / span of their capture times)."
runs renewals && echo "Worker peak RSS: $small_rss MB at $renewal_small due, $worker_rss MB at $renewal_due due ($(python3 -c "print(f'{($worker_rss - $small_rss) * 100 / $small_rss:+.0f} %')"); target: within 20 %)."
runs entitlements && echo "Select-only ceiling before / after the path: $select_before / $select_after tx/s (the table shows their mean)."
runs webhooks && echo "Payment-shaped ceiling before / after the path: $payment_before / $payment_after tx/s (the table shows their mean)."
if runs entitlements || runs webhooks; then
  echo
  echo "CPU per operation (the machine's busy time over the run / operations done; not bound to the host's speed of the moment):"
  echo
  echo "| path | CPU ms per operation | ceiling's CPU ms per tx, before / after |"
  echo "|---|---|---|"
  runs entitlements && echo "| GET entitlements | $ent_ms | select-only: $select_ms_before / $select_ms_after |"
  runs webhooks && echo "| CloudPayments Pay applied | $wh_ms | payment-shaped: $payment_ms_before / $payment_ms_after |"
fi
machine_line
autogroup_line
