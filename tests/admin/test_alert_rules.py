"""The Prometheus alerting rules (deploy/prometheus/axis-rules.yml; issue 14 item 5): well-formed, checked and
unit-tested by promtool when it is installed (Debian: `apt-get install prometheus`), and naming only metrics the
axis really exports."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from axis.admin.app import AdminSettings, create_app
from axis.stats.store import StatsStore
from tests.stats.stats_data import DIRECTORY, fill

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "deploy" / "prometheus" / "axis-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "axis-rules.test.yml"
METRIC = re.compile(r"\baxis_[a-z0-9_]+\b")
#: what issue 14 asks the rules to cover: each needs at least one alert naming one of these metrics
COVERS = {
    "dead letters growing": {"axis_dead_letters"},
    "uncollected over threshold": {"axis_uncollected_documents", "axis_uncollected_oldest_seconds"},
    "certificate or CRL expiring": {"axis_certificate_days_left", "axis_crl_days_left"},
    "a server not seen": {"axis_server_seconds_since_seen", "axis_server_up"},
    "the evidence log not advancing": {"axis_log_tree_size"},
    "queue depth": {"axis_queue_depth"},
}


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    out = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"], group
        out += group["rules"]
    return out


def test_every_rule_is_a_complete_alert() -> None:
    names = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Axis[A-Za-z]+", str(rule["alert"])) and rule["alert"] not in names
        names.add(rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        assert {"summary", "description"} <= set(rule["annotations"])  # type: ignore[arg-type]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", str(rule["for"]))


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    named = [set(METRIC.findall(str(rule["expr"]))) for rule in rules()]
    for what, metrics in COVERS.items():
        assert any(n & metrics for n in named), f"no alert on {what}"


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for base in ("axis", "endpoints")
                     for p in (ROOT / base).rglob("*.py"))


def test_every_metric_in_the_rules_is_registered_by_the_code() -> None:
    source = _source_text()
    for rule in rules():
        for name in METRIC.findall(str(rule["expr"])):
            # a metric family is registered under its name as a string literal (a counter's also without _total)
            base = name.removesuffix("_total")
            assert f'"{name}"' in source or f'"{base}"' in source, f"{rule['alert']}: {name} is not exported"


@pytest.fixture
def admin_metrics(store_url: str) -> Iterator[str]:
    async def filled() -> None:
        store = await StatsStore.open(store_url)
        try:
            await fill(store)
        finally:
            await store.close()

    asyncio.run(filled())
    settings = AdminSettings(stats_url=store_url, token="t", directory=DIRECTORY, poll_seconds=0.5,
                             endpoints={"d1": "http://127.0.0.1:9"},
                             amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost")
    with TestClient(create_app(settings)) as client:
        r = client.get("/metrics", headers={"Authorization": "Bearer t"})
        assert r.status_code == 200
        yield r.text


def test_the_admin_app_serves_the_new_alerting_metrics(admin_metrics: str) -> None:
    text = admin_metrics
    for family in ("axis_dead_letters gauge", "axis_dead_letter_actions_total counter", "axis_server_up gauge",
                   "axis_server_seconds_since_seen gauge", "axis_queue_depth gauge", "axis_log_tree_size gauge"):
        assert f"# TYPE {family}" in text, family
    assert 'axis_dead_letter_actions_total{action="resend"} 0.0' in text
    assert 'axis_server_up{server="d1"} 0.0' in text  # nothing answers on port 9: not seen


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: apt-get install prometheus)")
def test_promtool_checks_the_rules() -> None:
    assert promtool is not None
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: apt-get install prometheus)")
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    """Series in, alerts out: dead letters growing, a certificate under 30 days, a server not seen, the log not
    advancing while documents flow, a queue backlog — and silence where they should be silent."""
    assert promtool is not None
    r = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60,
                       cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
