# Shared by the benchmark scripts (sourced after deploy/lib.sh): PostgreSQL's own
# ceilings on this machine, measured in the same run as the paths they bound.
# Each prints one number. Needs DB (the database to work in) and .run/bench/.

mkdir -p .run/bench
# The processes a script started; `cleanup` (trapped on exit) stops them.
pids=()
# Each started process, and a service binary it runs as its child: a wrapper such as
# `WORKER_WRAP=heaptrack` runs the worker as its child (killing only the wrapper left the
# worker running into the next run, holding its metrics port and the previous run's
# secrets key). The wrapper's own helpers (heaptrack's writer) are left to finish their
# output once the binary is gone.
cleanup() {
  for p in "${pids[@]}"; do pkill -P "$p" -x 'billing-(api|worker)' 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; pids=()
}
# Session autogroups (`kernel.sched_autogroup_enabled`, on in Debian's kernels) give
# each login session one share of the CPU: PostgreSQL, started in a session of its
# own, gets one, and everything a benchmark starts (the API, the worker, wrk,
# pgbench) shares another. With them on, backends that had their statements waited
# up to 0.25 s for a CPU with both cores busy: the entitlement reads' p99 stalls
# (bench/README, "The entitlement stalls: session autogroups"). PostgreSQL servers
# are tuned with them off. The scripts turn them off for the run (as root, or through
# `sudo -n`) and restore them on exit, if they turned them off; AUTOGROUP=keep leaves
# the setting alone. The switch is host-wide, and it applies to processes forked after
# it: the backends of the run's connections and everything the run starts, not the
# PostgreSQL and RabbitMQ servers already running.
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled
AUTOGROUP_WAS=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo absent)
AUTOGROUP_CHANGED=0
# Writes VALUE to the setting, directly or through sudo without a password: VALUE
set_autogroup() {
  if [ -w "$AUTOGROUP_FILE" ]; then
    { echo "$1" > "$AUTOGROUP_FILE"; } 2>/dev/null
  else
    sudo -n sysctl -qw "kernel.sched_autogroup_enabled=$1" >/dev/null 2>&1
  fi
}
restore_autogroup() {
  if [ "$AUTOGROUP_CHANGED" = 1 ]; then set_autogroup 1 || log "could not turn session autogroups back on"; fi
}
trap 'restore_autogroup; cleanup' EXIT
if [ "$AUTOGROUP_WAS" = 1 ] && [ "${AUTOGROUP:-off}" != keep ]; then
  if set_autogroup 0; then
    AUTOGROUP_CHANGED=1
  else
    log "session autogroups stay on (not root, no sudo): expect entitlement stalls of up to 0.25 s"
  fi
fi
# How the run was scheduled, for the table's footer.
autogroup_line() {
  case "$AUTOGROUP_CHANGED/$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo absent)" in
    1/0) echo "session autogroups: off for the run (the host has them on)" ;;
    */1) echo "session autogroups: on (AUTOGROUP=keep, or the setting could not be written): expect single requests of up to 0.25 s" ;;
    */0) echo "session autogroups: off" ;;
    *) echo "session autogroups: not in this kernel" ;;
  esac
}
# The host and the PostgreSQL settings the figures depend on, for the table's footer:
# WAL and checkpoint settings set how often a random index page is written whole to
# the WAL again (bench/README, "Usage at scale and the server's settings").
machine_line() {
  local pg
  pg=$(psql -h 127.0.0.1 -U postgres -qAt -F ' ' -c "SELECT current_setting('server_version'), current_setting('shared_buffers'),
    current_setting('max_wal_size'), current_setting('checkpoint_timeout'), current_setting('wal_compression')" | awk '{
      printf "PostgreSQL %s (shared_buffers %s, max_wal_size %s, checkpoint_timeout %s, wal_compression %s)", $1, $(NF-3), $(NF-2), $(NF-1), $NF }')
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $pg$*"
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# psql itself, not Debian's Perl wrapper in front of it: the wrapper costs about
# 45 ms of CPU per call, and the renewal run polls twice a second on the two cores
# it measures (perf counted the polling at 6 % of the machine, 2026-12-02).
PSQL=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -1)
PSQL=${PSQL:-psql}
q() { "$PSQL" -h 127.0.0.1 -U postgres -d "$DB" -qAt -v ON_ERROR_STOP=1 "$@"; }

# CPU time the whole machine spent busy so far (user, nice, system, irq, softirq;
# not idle, I/O wait or steal), in ticks of 1/100 s. The difference over a run,
# divided by the operations done, is CPU per operation: unlike a rate, it does not
# follow the host's speed of the moment (this VM's ceilings moved 2x within hours).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# CPU ms per operation: TICKS OPS
ms_per_op() { python3 -c "print(f'{$1 * 10 / max($2, 1):.2f}')"; }

fresh_db() { # NAME
  "$PSQL" -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

# A payment-shaped durable transaction (insert a payment, move a subscription's
# period, 4 ledger entries, 2 outbox rows), prepared, 8 clients for SECONDS_EACH
# (default 15): tx/s. Leaves the transactions done and the machine's busy ticks in
# .run/bench/pg_ceiling.{tx,ticks} (CPU per transaction).
pg_ceiling() {
  q <<'SQL'
DROP TABLE IF EXISTS pgb_subs, pgb_payments, pgb_ledger, pgb_outbox;
CREATE TABLE pgb_subs (id int PRIMARY KEY, period_end timestamptz NOT NULL);
INSERT INTO pgb_subs SELECT g, now() FROM generate_series(1, 100000) g;
CREATE TABLE pgb_payments (id uuid PRIMARY KEY, sub int NOT NULL, amount numeric(14,2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE pgb_ledger (id bigserial PRIMARY KEY, txn uuid NOT NULL, account int NOT NULL, amount numeric(14,2) NOT NULL);
CREATE TABLE pgb_outbox (seq bigserial PRIMARY KEY, payload jsonb NOT NULL, published_at timestamptz);
SQL
  cat > .run/bench/payment.sql <<'SQL'
\set sub random(1, 100000)
BEGIN;
INSERT INTO pgb_payments VALUES (gen_random_uuid(), :sub, 1990.00, now());
UPDATE pgb_subs SET period_end = period_end + interval '1 month' WHERE id = :sub;
INSERT INTO pgb_ledger (txn, account, amount) SELECT t, a, v FROM (SELECT gen_random_uuid() t) x,
  (VALUES (1, -1990.00), (2, 1990.00), (2, -1990.00), (3, 1990.00)) e(a, v);
INSERT INTO pgb_outbox (payload) VALUES ('{"type":"subscription.renewed"}'), ('{"type":"payment.succeeded"}');
COMMIT;
SQL
  local t0; t0=$(busy_ticks)
  pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 8 -j 2 -T "${SECONDS_EACH:-15}" -f .run/bench/payment.sql "$DB" 2>/dev/null |
    awk '/^tps/ {printf "%d", $3} /transactions actually processed/ {print $NF > ".run/bench/pg_ceiling.tx"}'
  echo "$(( $(busy_ticks) - t0 ))" > .run/bench/pg_ceiling.ticks
  q -c "DROP TABLE pgb_subs, pgb_payments, pgb_ledger, pgb_outbox"
}

# pgbench's select-only script (one primary-key read per transaction, scale 10),
# prepared statements as the service uses them, 16 clients: tx/s (and, as
# `pg_ceiling`, .run/bench/select_ceiling.{tx,ticks}).
select_ceiling() {
  pgbench -h 127.0.0.1 -U postgres -i -q -s 10 "$DB" >/dev/null 2>&1
  local t0; t0=$(busy_ticks)
  pgbench -h 127.0.0.1 -U postgres -n -S -M prepared -c 16 -j 2 -T "${SECONDS_EACH:-15}" "$DB" 2>/dev/null |
    awk '/^tps/ {printf "%d", $3} /transactions actually processed/ {print $NF > ".run/bench/select_ceiling.tx"}'
  echo "$(( $(busy_ticks) - t0 ))" > .run/bench/select_ceiling.ticks
  q -c "DROP TABLE pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"
}

# COPY of ROWS (default 1 000 000) usage events into the same shape as ingestion
# writes (a day partition of usage_events and a generation of usage_event_keys
# with its unique hash index, the ids' 16-byte digests as the service computes them), the
# ids MD5 hex strings as bench/usage.sh sends, from
# STREAMS (default 4, as many as bench/usage.sh's clients) sessions at once: rows/s.
copy_ceiling() {
  local rows=${1:-1000000} streams=${STREAMS:-4}
  python3 - "$rows" "$streams" .run/bench/copy <<'PY'
import hashlib, sys, uuid
n, streams, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
t = "00000000-0000-0000-0000-000000000001"
tb = uuid.UUID(t).bytes
files = [(open(f"{prefix}-events-{k}.csv", "w"), open(f"{prefix}-keys-{k}.csv", "w")) for k in range(streams)]
for i in range(n):
    events, keys = files[i % streams]
    eid = hashlib.md5(f"copy-{i}".encode()).hexdigest()
    events.write(f"{t},{eid},{uuid.UUID(int=i % 10000 + 1)},{uuid.UUID(int=i % 10000 + 2)},messages,1,"
                 "2026-04-30 09:00:00+00,2026-04-20 09:00:00+00,2026-05-01 09:00:00+00\n")
    keys.write(f"587,{uuid.UUID(bytes=hashlib.sha256(tb + eid.encode()).digest()[:16])}\n")
for events, keys in files:
    events.close(); keys.close()
PY
  q -c "DROP TABLE IF EXISTS copy_events, copy_keys" \
    -c "CREATE TABLE copy_events (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" \
    -c "CREATE TABLE copy_keys (LIKE usage_event_keys INCLUDING DEFAULTS, EXCLUDE USING hash (key WITH =))"
  local t0 t1 k copiers=()
  t0=$(date +%s.%N)
  for ((k = 0; k < streams; k++)); do
    q -c "\\copy copy_events (tenant_id, event_id, customer_id, subscription_id, metric, quantity, occurred_at, period_start, received_at) FROM '.run/bench/copy-events-$k.csv' CSV" \
      -c "\\copy copy_keys FROM '.run/bench/copy-keys-$k.csv' CSV" &
    copiers+=($!)
  done
  wait "${copiers[@]}"
  t1=$(date +%s.%N)
  q -c "DROP TABLE copy_events, copy_keys"
  python3 -c "print(round($rows / ($t1 - $t0)))"
}

# pg_stat_statements (when the server preloads it) around one measured run.
# `stmt_reset` before it empties the statistics, PROFILE or not: a full table
# (pg_stat_statements.max) evicts entries and may rewrite its query-text file under
# an exclusive lock that every statement waits for, which stalled entitlement reads
# for 0.1-0.4 s (bench/README, "The all.sh runs of 2026-12-04"). With PROFILE=1,
# `stmt_top FILE OPS` after the run writes every statement's calls per operation and
# mean/total execution time, heaviest first.
stmt_reset() {
  if [[ "$(q -c 'SHOW shared_preload_libraries')" != *pg_stat_statements* ]]; then
    [ -n "${PROFILE:-}" ] && log "PROFILE: the server does not preload pg_stat_statements (ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', then restart PostgreSQL)"
    PROFILE=; return 0
  fi
  q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
}
stmt_top() { # FILE OPS
  [ -n "${PROFILE:-}" ] || return 0
  q -F ' | ' -v ops="$2" > "$1" <<'SQL'
SELECT round(calls::numeric / :ops, 2) AS per_op, round(mean_exec_time::numeric, 3) AS mean_ms,
       round(total_exec_time::numeric / :ops, 3) AS ms_per_op, left(regexp_replace(query, '\s+', ' ', 'g'), 160)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC LIMIT 40
SQL
  log "statements per operation: $1"
}
