"""Checks for deploy/check-artifacts that no off-the-shelf tool makes.

  python3 deploy/check_artifacts.py names                  # dashboard + alert queries
  python3 deploy/check_artifacts.py kustomization DIR      # every manifest is listed
  python3 deploy/check_artifacts.py compose-binds FILE     # `compose config --format json`
  python3 deploy/check_artifacts.py live FILE api|worker   # a scraped /metrics body

Queries are parsed with promql-parser (a PromQL parser); every metric they select
must be one the service exports: named in the Rust sources (counter!, gauge!,
histogram!) or in EXPECTED below (the business gauges, whose names the worker's
sampler composes). Exits 1 on any
problem, printing each one.
"""

import json
import pathlib
import re
import sys

import promql_parser
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
RULES = ROOT / "deploy/prometheus/alerts.yml"

# Which binary exports what. Worker: sampled by it or counted by the services it
# runs; API: counted per request.
API = {"http_requests_total", "http_request_duration_seconds"}
WORKER = {
    "billing_charges_total", "billing_dead_letters_total", "billing_dunning_retries_total",
    "billing_job_retries_total", "billing_outbox_published_total", "billing_provider_refusals_total",
    "billing_renewals_started_total", "billing_scheduler_claimed_total", "billing_webhook_deliveries_total",
    "billing_outbox_lag_seconds", "billing_queue_messages_ready", "billing_job_seconds",
    "billing_job_batch_seconds", "billing_scheduler_tick_seconds", "billing_charge_batch_phase_seconds",
    # Business gauges sampled by the worker from PostgreSQL (billing-worker/src/sampler.rs).
    "billing_subscriptions", "billing_mrr", "billing_renewals_due", "billing_refunds",
    "billing_receipts", "billing_payments", "billing_receipts_oldest_pending_seconds",
    "billing_business_sampled_timestamp_seconds",
}
EXPECTED = API | WORKER
# Present in a live process within seconds of its start, whatever the data: the
# others appear with their first event or their first row.
ALWAYS = {
    "api": {"http_requests_total", "http_request_duration_seconds"},
    "worker": {"billing_queue_messages_ready", "billing_outbox_lag_seconds",
               "billing_scheduler_tick_seconds", "billing_scheduler_claimed_total"},
}
# Made by Prometheus itself.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def in_code():
    """Metric names the Rust sources register."""
    macro = re.compile(r'\b(?:counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    names = set()
    for crate in ("shared", "billing-api", "billing-worker", "tests"):
        for path in (ROOT / crate).rglob("*.rs"):
            names.update(macro.findall(path.read_text(encoding="utf-8")))
    return names


def base_name(name, known):
    """The exported family a selected series belongs to (a summary's or histogram's
    _sum, _count and _bucket series belong to it)."""
    if name in known:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name


def selected(expr):
    """(metric name, its matchers as text) for each selector of an expression, after
    Grafana's variables are replaced."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            if name is None:  # {__name__="..."}
                match = re.search(r'__name__="([^"]+)"', str(node.matchers))
                name = match.group(1) if match else None
            if name:
                names.append((name, str(node.matchers)))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def queries():
    """(where, expression) for every dashboard target and alerting rule."""
    found = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        stack = list(dash.get("panels", []))
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{path.name}: {panel.get('title')}", target["expr"]))
        for var in dash.get("templating", {}).get("list", []):
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            for metric in re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,", query):
                found.append((f"{path.name}: variable {var.get('name')}", metric))
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            found.append((f"{RULES.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def referenced():
    """{metric family: [where]} over every query, the names selected by `quantile`
    (summaries), and the problems (parse errors)."""
    known = EXPECTED | in_code()
    refs, quantiles, problems = {}, set(), []
    for where, expr in queries():
        try:
            names = selected(expr)
        except Exception as e:  # the parser raises its own exception types
            problems.append(f"{where}: cannot parse {expr!r}: {e}")
            continue
        for name, matchers in names:
            refs.setdefault(base_name(name, known), []).append(where)
            if "quantile" in matchers:
                quantiles.add(name)
    return refs, quantiles, problems


def check_names():
    known = EXPECTED | in_code()
    refs, _, problems = referenced()
    for name, wheres in sorted(refs.items()):
        if name not in known and name not in SYNTHETIC:
            problems.append(f"{name}: no such metric (used by {', '.join(sorted(set(wheres)))})")
    for name in sorted(in_code() - EXPECTED):
        print(f"note: {name} is exported but not in EXPECTED; add it to the dashboard if it matters")
    pending = sorted(name for name in EXPECTED - in_code() if name in refs)
    if pending:
        print(f"note: used, expected, not in the Rust sources yet: {', '.join(pending)}")
    print(f"{sum(len(w) for w in refs.values())} metric selections in {len(queries())} queries, "
          f"{len(refs)} metrics")
    return problems


def check_kustomization(directory):
    directory = pathlib.Path(directory)
    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    return [f"{directory}/{name}: not listed in kustomization.yaml resources" for name in sorted(present - listed)]


def check_compose_binds(rendered):
    config = json.loads(pathlib.Path(rendered).read_text())
    problems = []
    for service, spec in sorted(config["services"].items()):
        for volume in spec.get("volumes", []):
            if volume.get("type") == "bind" and not pathlib.Path(volume["source"]).exists():
                problems.append(f"{service}: bind mount source {volume['source']} does not exist")
    return problems


def check_live(body_file, binary):
    """Families a scraped /metrics body holds, against what the queries use."""
    types, families = {}, set()
    for line in pathlib.Path(body_file).read_text(encoding="utf-8").splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            families.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    exported = {base_name(name, set(types)) for name in families}
    refs, quantiles, problems = referenced()
    # metrics-exporter-prometheus renders histograms as summaries unless buckets are
    # set; the queries read their `quantile` series and would go blank on histograms.
    for name in sorted(quantiles):
        if types.get(name, "summary") != "summary":
            problems.append(f"{name} is a {types[name]} here, but the queries read it as a summary (quantile=...)")
    mine = sorted(name for name in refs if name in (API if binary == "api" else WORKER))
    missing = [name for name in mine if name not in exported]
    code = in_code()
    for name in missing:
        where = ", ".join(sorted(set(refs[name])))
        if name in ALWAYS[binary]:
            problems.append(f"{name}: used by {where} but not served by this {binary}")
        elif name not in code:
            print(f"note: {name} not served: not in the Rust sources yet; used by {where}")
        else:
            print(f"note: {name} not served yet (appears with its first event or row); used by {where}")
    print(f"{binary}: {len(mine) - len(missing)} of {len(mine)} referenced metrics served")
    return problems


def main(argv):
    commands = {
        "names": lambda: check_names(),
        "kustomization": lambda: check_kustomization(argv[2]),
        "compose-binds": lambda: check_compose_binds(argv[2]),
        "live": lambda: check_live(argv[2], argv[3]),
    }
    if len(argv) < 2 or argv[1] not in commands or (argv[1] == "live" and argv[3:4] not in (["api"], ["worker"])):
        print(__doc__, file=sys.stderr)
        return 2
    problems = commands[argv[1]]()
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
