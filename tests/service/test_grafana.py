"""The Grafana dashboard in service/monitoring/grafana: every query is valid PromQL (promtool), every metric it
queries is served by a real web process (/metrics) or a real worker (its metrics port), and the compose file's
monitoring profile provisions it with a data source of the uid its panels name, on loopback, with a password of
the operator's."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.bootstrap import broker, store
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from tests.support import trace_actors
from tests.support.promtool import ROOT, promtool
from tests.support.records import move, put_record
from tests.support.web import WebProcess, free_port
from tests.support.workers import WorkerProcess

GRAFANA = ROOT / "service" / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "jobs.json"
#: PromQL words that are not metric names (aggregation modifiers, set and vector-matching operators).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
#: Grafana's variables, replaced by what they stand for so promtool can read the expressions.
VARIABLES = {"$__rate_interval": "5m", "$queue": ".*"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    found = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert len(found) >= 20, found  # the walk found the panels' queries
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers not called as functions once label matchers,
    strings, ranges and `by (...)`-style label lists are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def queried_metrics() -> set[str]:
    names = set().union(*(metric_names(e) for e in expressions()))
    for variable in dashboard()["templating"]["list"]:
        names |= set(re.findall(r"label_values\((\w+)", variable["definition"]))
    return names


def test_the_metric_name_reader_takes_names_and_leaves_functions_labels_and_ranges() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{queue=~"$queue", x="b c"}[5m]))) / on (q) b_total'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(expressions()):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    rule_file = tmp_path / "dashboard-rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def served() -> Iterator[set[str]]:
    """Every sample name a real web process and a real worker serve, once jobs have completed, been retried and been
    dead-lettered (a labelled series appears only once it has counted something)."""
    port = free_port()
    env = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1"}
    with (
        WorkerProcess(
            processes=1, threads=2, queues=[trace_actors.QUEUE], modules=["tests.support.trace_actors"], env=env
        ),
        WebProcess(extra_args=["--log-level", "warning", "--no-access-log"]) as web,
    ):
        jobs = Jobs(broker, store)
        # A consumer group, as another service would make: its lag is a labelled series.
        store.client.xgroup_create(keys.EVENTS, "grafana-test", id="$", mkstream=True)
        retried = jobs.enqueue("traced_flaky", {"key": "grafana-retried", "failures": 1}).job_id
        dead = jobs.enqueue("traced_flaky", {"key": "grafana-dead", "failures": 99}).job_id
        assert jobs.wait(retried, timeout_s=30).state is JobState.COMPLETED
        assert jobs.wait(dead, timeout_s=30).state is JobState.FAILED
        # A keyed job waiting and one running: the per-key gauges have series only while a key has such jobs.
        put_record(key="grafana-waiting")
        move(put_record(key="grafana-running"), JobState.ACTIVE)
        names: set[str] = set()
        deadline = time.monotonic() + 15
        while "jobs_worker_threads_busy" not in names:  # served once the worker process answers the scrape
            assert time.monotonic() < deadline, f"the worker never served its metrics: {sorted(names)}"
            try:
                names = sample_names(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            except httpx.TransportError:
                time.sleep(0.2)
        web_metrics = httpx.get(f"{web.url}/metrics", timeout=10)
        assert web_metrics.status_code == 200
        yield names | sample_names(web_metrics.text)


def sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_metric_the_dashboard_queries_is_served(served: set[str]) -> None:
    wanted = queried_metrics()
    assert {"jobs_queue_waiting", "jobs_run_duration_seconds_bucket", "jobs_worker_threads_busy"} <= wanted
    # Counts, failures and run times are the store's: Dramatiq's per-message worker series are no longer kept.
    assert not {name for name in wanted if name.startswith("dramatiq_")}
    assert wanted - served == set(), f"queried but not served: {sorted(wanted - served)}"


def test_compose_provisions_grafana_with_the_dashboard_and_the_prometheus_it_reads() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    assert grafana["profiles"] == ["monitoring"] == compose["services"]["prometheus"]["profiles"]
    assert all(str(port).startswith("127.0.0.1:") for port in grafana["ports"])
    # The operator's password, no default: unset, Grafana would start with "admin", so the container refuses.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"
    assert "test -n" in grafana["entrypoint"][-1] and "GF_SECURITY_ADMIN_PASSWORD" in grafana["entrypoint"][-1]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    for source in mounts:
        assert (ROOT / source).is_dir(), source
    provisioning = ROOT / next(s for s, target in mounts.items() if target == "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "jobs.yml").read_text())["providers"]
    dashboards = Path(next(s for s, target in mounts.items() if target == provider["options"]["path"]))
    assert (ROOT / dashboards / DASHBOARD.name).is_file()
    uids = {p["datasource"]["uid"] for p in dashboard()["panels"] if "datasource" in p}
    assert uids == {source["uid"]}
