"""The Grafana dashboard and the metrics reference name only metrics alertd exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from alertd.daemon.http import ViewCollector
from alertd.daemon.view import EMPTY
from alertd.rules.metrics import PUBLISHED

DOCS = Path(__file__).resolve().parent.parent / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"
METRICS_MD = DOCS / "metrics.md"
METRIC = re.compile(r"alertd_[a-z_]+")


def exported() -> dict[str, str]:
    """Metric name as exposed on /metrics (counters with ``_total``) -> type."""
    registry = CollectorRegistry()
    registry.register(ViewCollector(lambda: EMPTY))
    text = generate_latest(registry).decode()
    # Every family gets a TYPE line even when it has no samples (no accounts here).
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def test_exporter_names() -> None:
    names = exported()
    assert names["alertd_margin_ratio"] == "gauge"
    assert names["alertd_reconnects_total"] == "counter"
    assert names["alertd_notifications_sent_total"] == "counter"
    # the figures' gauges are the registry's published metrics (one family each), then the
    # feed, insurance fund, alert, delivery and engine families
    published = sum(len(metrics) for metrics in PUBLISHED.values())
    assert len(names) == published + 10


def test_dashboard_metrics_are_exported(dashboard: dict[str, Any]) -> None:
    names = exported()
    used = {m for e in exprs(dashboard) for m in METRIC.findall(e)}
    assert used, "no alertd metric in any panel expr"
    assert not used - names.keys(), f"not exported: {sorted(used - names.keys())}"
    # A counter is only meaningful through rate()/increase().
    for e in exprs(dashboard):
        for m in METRIC.findall(e):
            if names[m] == "counter":
                assert re.search(rf"(rate|increase)\(\s*{m}\b", e), e


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "alertd"
    assert dashboard["schemaVersion"] == 39
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "label_values(alertd_margin_ratio, account)" in json.dumps(variables["account"])
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for p in panels(dashboard):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]
    # Panels must not overlap on the 24-column grid.
    cells: set[tuple[int, int]] = set()
    for p in panels(dashboard):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        here = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & here, f"{p['title']} overlaps another panel"
        cells |= here


def test_metrics_reference_matches_exporter() -> None:
    names = exported()
    documented = set(METRIC.findall(METRICS_MD.read_text()))
    assert not documented - names.keys(), f"not exported: {sorted(documented - names.keys())}"
    assert not names.keys() - documented, f"undocumented: {sorted(names.keys() - documented)}"
