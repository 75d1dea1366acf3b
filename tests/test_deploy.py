"""deploy/: the Prometheus scrape config, alert rules and Grafana dashboard name only metrics our stages expose, on
the ports the config gives them, and the compose file runs Prometheus, node_exporter and Grafana with them.

promtool is not available here, so each PromQL expression is checked by parsing: balanced brackets, and every
metric name in it (what is left once functions, keywords, label matchers, grouping lists, ranges and strings are
taken out) is a series one of our registries produces."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pricing.monthly import RunSummary
from ubi.adapters.metrics import ScorerMetrics, StoreMetrics, bridge_registry, write_pricing_textfile
from ubi.common.config import Config
from ubi.stages.bridge import LATENCY_BUCKETS_MS, BridgeStats

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMETHEUS_BUILTINS = {"up"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"inf", "nan"}


def exposed_names(tmp_path: Path) -> set[str]:
    """Every sample name our registries produce, with data in them so optional series appear too."""
    from prometheus_client import generate_latest

    stats = BridgeStats()
    stats.received, stats.reasons = 1, {"malformed_json": 1}
    texts = [generate_latest(bridge_registry(stats, LATENCY_BUCKETS_MS)).decode()]
    scorer = ScorerMetrics()
    scorer.quarantined.labels("unscorable").inc()
    scorer.lag.labels("g", "t", "0").set(1)
    scorer.uncommitted.labels("0").set(1)
    scorer.commit.labels("g").observe(0.01)
    store = StoreMetrics(clock=lambda: 2e9)
    store.seed([("V1", 1e9)])
    texts += [generate_latest(scorer.registry).decode(), generate_latest(store.registry).decode()]
    prom = tmp_path / "pricing.prom"
    write_pricing_textfile(prom, RunSummary("r", date(2026, 10, 1), 1, 1, 0, 0, Decimal(1), Decimal(1)), 1.0)
    texts.append(prom.read_text())
    return {s.name for t in texts for f in text_string_to_metric_families(t) for s in f.samples}


def metric_names(expr: str) -> set[str]:
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\boffset\s+\w+", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        if m.group(2) is None and m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch in expr:
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            depth[pairs[ch]] -= 1
            if depth[pairs[ch]] < 0:
                return False
    return not any(depth.values())


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "ubi.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_the_name_check_would_catch_a_typo():
    assert metric_names('sum by (group) (rate(ubi_x_total{a="b"}[5m])) > 0.1 and on() ubi_y') == {
        "ubi_x_total",
        "ubi_y",
    }
    assert metric_names("time() - (day_of_month() - 1) * 86400 > 1e3") == set()
    assert not balanced("sum(rate(x[5m])")


def test_alert_rules_cover_the_issue_and_reference_real_metrics(tmp_path):
    names = exposed_names(tmp_path) | PROMETHEUS_BUILTINS
    rules = alert_rules()
    by_name = {r["alert"]: r for r in rules}
    for wanted in ("UbiConsumerLagGrowing", "UbiDeadLetterSpike", "UbiDeviceSilentForADay", "UbiNoPricingRunThisMonth"):
        assert wanted in by_name, wanted
    for r in rules:
        assert balanced(r["expr"]), r["alert"]
        used = metric_names(r["expr"])
        assert used, r["alert"]
        assert used <= names, (r["alert"], used - names)
        assert r["labels"]["severity"] in {"info", "warning", "critical"} and r["annotations"]["summary"]
        if "for" in r:
            assert re.fullmatch(r"\d+[smhd]", r["for"]), r["alert"]


def test_dashboard_panels_reference_real_metrics(tmp_path):
    names = exposed_names(tmp_path)
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for e in exprs:
        assert balanced(e), e
        assert metric_names(e) and metric_names(e) <= names, (e, metric_names(e) - names)
    shown = set().union(*(metric_names(e) for e in exprs))
    for wanted in ("ubi_kafka_consumer_lag", "ubi_scorer_open_trips", "ubi_store_devices_silent"):
        assert wanted in shown


def test_scrape_targets_are_the_configured_ports():
    cfg = Config().ingest
    doc = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in doc["scrape_configs"]}
    assert jobs["ubi-bridge"] == [f"127.0.0.1:{cfg.metrics_port}"]
    assert jobs["ubi-scorer"] == [f"127.0.0.1:{cfg.scorer_metrics_port}"]
    assert jobs["ubi-store"] == [f"127.0.0.1:{cfg.store_metrics_port}"]
    assert "ubi-pricing" in jobs and doc["rule_files"] == ["/etc/prometheus/alerts.yml"]


@pytest.mark.parametrize("service", ["prometheus", "grafana", "node-exporter"])
def test_compose_runs_the_observability_services_with_files_that_exist(service):
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    svc = doc["services"][service]
    for vol in svc["volumes"]:
        src = vol.split(":")[0]
        if src.startswith("."):
            assert (DEPLOY / src).exists() or src == "../.ubi/metrics", (service, src)
    assert svc["network_mode"] == "host"  # the stages listen on 127.0.0.1 of the host
    assert {"mosquitto", "kafka"} <= set(doc["services"])  # beside the stack
