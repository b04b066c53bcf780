#!/bin/sh
# The provider-sim service of deploy/compose.yaml: runs `provider-sim --demo`, then
# points the demo tenants it seeded at the simulator's compose host name.
#
# Why the second step: the simulators name themselves http://127.0.0.1:<port> when
# the demo seeds the tenants (tests/src/{cloudpayments,yookassa,atol}/mod.rs). In
# compose the API and the worker run in containers of their own, where 127.0.0.1 is
# not the simulator, and YooKassa notifications (accepted from `notification_ips`,
# 127.0.0.0/8 in deploy/demo/tenants.json) come from the simulator's container
# address. The operator endpoint PATCH /v1/admin/tenants/{id} (an RFC 7396 merge
# patch) rewrites both. Drop this once provider-sim can be told its public host.
#
# Tenants are seeded afresh on every start of the container (the state file lives in
# the container's /tmp): a restart leaves the earlier demo tenants behind, unused.
set -eu

api=${BILLING_API_URL:?BILLING_API_URL is the API as the simulator reaches it}
token=${BILLING_ADMIN_TOKEN:?}
state=${DEMO_STATE:-/tmp/demo-state.json}
host=${SIM_PUBLIC_HOST:-provider-sim}
ready=/tmp/demo-ready # the compose healthcheck waits for it

rm -f "$state" "$ready"
provider-sim --demo &
sim=$!
trap 'kill -TERM "$sim" 2>/dev/null || true' INT TERM

# The demo writes its state file (tenant ids and keys) once every tenant is seeded.
while [ ! -s "$state" ]; do
  if ! kill -0 "$sim" 2>/dev/null; then
    wait "$sim" && status=0 || status=$?
    echo "provider-sim-demo: provider-sim exited ($status) before seeding the demo" >&2
    exit "$status"
  fi
  sleep 1
done

ip=$(getent hosts "$host" | cut -d' ' -f1 | head -n1)
[ -n "$ip" ] || { echo "provider-sim-demo: cannot resolve $host" >&2; exit 1; }
case $ip in *:*) range="$ip/128" ;; *) range="$ip/32" ;; esac
patch_tenant() { # id json
  curl -fsS -X PATCH "$api/v1/admin/tenants/$1" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$2"
}
atol="{\"provider\":{\"api_url\":\"http://$host:8092/possystem/v5/\"}}"
sed -n 's/.*"tenant_id": *"\([^"]*\)".*/\1/p' "$state" | while read -r id; do
  # An empty merge patch changes nothing and answers the tenant as it stands.
  view=$(patch_tenant "$id" '{}')
  case $view in
    *'"kind":"yookassa"'* | *'"kind": "yookassa"'*)
      gateway="{\"api_url\":\"http://$host:8093/v3/\",\"notification_ips\":[\"$range\"]}" ;;
    *) gateway="{\"api_url\":\"http://$host:8091\"}" ;;
  esac
  case $view in
    *'"fiscal":null'* | *'"fiscal": null'*) fiscal='' ;; # no receipts for this tenant
    *) fiscal=",\"fiscal\":$atol" ;;
  esac
  patch_tenant "$id" "{\"gateway\":$gateway$fiscal}" >/dev/null
done
echo "provider-sim-demo: demo tenants now use the simulators at $host ($ip)." \
  "On the host, run the walkthrough above with $api replaced by http://127.0.0.1:8080." >&2
touch "$ready"

# A signal interrupts the first wait (the trap forwards it); the second one collects
# the simulator's exit status.
status=0
wait "$sim" || status=$?
if kill -0 "$sim" 2>/dev/null; then
  status=0
  wait "$sim" || status=$?
fi
exit "$status"
