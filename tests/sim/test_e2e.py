"""End to end: a reduced seed-2019 through a real running axis (core's machinery, real RabbitMQ vhost).

The axis is generated (PKI, tokens, config) and brought up exactly as `axis demo` does it; the simulator then
drives it over HTTP and the three tallies — simulator, the axis's own counters, the inboxes — must agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from axis.sim import plan as pl
from axis.sim import scenario as scn
from axis.sim.connections import Connections
from axis.sim.driver import Options, simulate
from axis.sim.report import Reporter
from tests.support.testing import free_port_block

pytest.importorskip("axis.ops.up", reason="core's axis.ops.up (the machinery of `axis up`) is not merged yet")
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

DOCUMENTS = 60
BAD = 6


@pytest.fixture(scope="module")
def small() -> scn.Scenario:
    sc = scn.scale(scn.load("seed-2019"), agencies=8, documents=DOCUMENTS, bad=BAD)
    assert sc.shared >= 2 and sc.dedicated >= 4
    return sc


@pytest.fixture(scope="module")
def running(small: scn.Scenario, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connections]:
    from axis.sim import demo

    wd = tmp_path_factory.mktemp("axis") / "work"
    config, raw = demo.prepare(small, wd, base_port=free_port_block(len(small.servers)), amqp_url=amqp_url)
    axis = demo.AxisProcess(config, wd, timeout=120)
    try:
        conns = axis.start(raw)
        yield conns
    finally:
        axis.stop()


def test_reduced_seed_2019_agrees(small: scn.Scenario, running: Connections) -> None:
    planned = pl.totals(pl.plan(small, 7))
    assert planned.bad == BAD
    report = asyncio.run(simulate(small, 7, running, Options(workers=0, stall_timeout=30), Reporter(quiet=True)))
    assert report.unexpected == []
    assert report.agree is True
    assert report.accepted == report.sent == DOCUMENTS
    assert report.received == report.inbox == small.deliveries == planned.deliveries
    assert report.inbox_duplicates == 0
    refusals = {**report.refused_sync}
    for k, v in report.refused_async.items():
        refusals[k] = refusals.get(k, 0) + v
    assert refusals == planned.by_reason  # each bad envelope refused with the reason it was made for
    assert report.refused == BAD and report.refused_agree  # and counted by the axis, wherever it was refused
    assert report.statuses_sent == planned.statuses and report.statuses_failed == 0
    assert report.statuses_seen == report.statuses_checked > 0
    assert (report.agencies, report.dedicated, report.shared) == (8, small.dedicated, small.shared)


def test_simulate_cli_json_second_run(running: Connections) -> None:
    """`axis simulate --json` against the same running axis: this run's share of the counters agrees too."""
    from axis.cli import app

    assert running.path is not None
    result = CliRunner().invoke(
        app,
        ["simulate", "--connections", str(running.path), "--documents", "30", "--seed", "8", "--json",
         "--quiet", "--workers", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert out["agree"] is True
    assert out["scenario"] == "seed-2019"
    assert out["sent"] == 30 and out["received"] == out["inbox"] == round(30 * 79684 / 28024)
    assert {"refused", "seconds"} <= set(out)


def test_simulate_without_running_axis(tmp_path: Path) -> None:
    from axis.cli import app

    result = CliRunner().invoke(app, ["simulate", "--connections", str(tmp_path / "none.json"), "--quiet"])
    assert result.exit_code == 2


@pytest.fixture()
def own_vhost(amqp_url: str) -> Iterator[str]:
    """A vhost of its own: two axes on one vhost would share queue names and take each other's messages."""
    import uuid

    import httpx

    from tests.conftest import RABBIT_AUTH, RABBIT_HOST, RABBIT_MGMT

    vhost = f"axis-test-sim-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=RABBIT_MGMT, auth=RABBIT_AUTH, timeout=30) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        http.put(f"/api/permissions/{vhost}/guest", json=perms).raise_for_status()
        try:
            yield f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
        finally:
            http.delete(f"/api/vhosts/{vhost}")
            from axis.broker.users import delete_users_with_prefix

            delete_users_with_prefix(RABBIT_MGMT, RABBIT_AUTH, f"{vhost}.")  # the axis's broker users


def test_migration_scenario_loses_nothing(own_vhost: str, tmp_path: Path) -> None:
    """An agency leaves its shared server mid-run, moved live by the axis (axis.ops.livemove): every document
    arrives exactly once and the three tallies agree."""
    from axis.sim import demo

    sc = scn.from_dict(
        {
            "name": "migration-small",
            "start": "2019-04-01",
            "days": 3,
            "documents": 50,
            "deliveries": 120,
            "agencies": {"preset": "vn-2019", "count": 8, "shared_servers": 1, "shared_members": ["H01", "H02"]},
            "migrations": [{"agency": "H01", "at": 0.5}],
            "mix": {"recipient_weights": {"H01": 10}, "statuses": {"share": 0.3}},
            "bad": {"count": 2},
        }
    )
    assert sc.placement["000.00.00.H01"] == "g22-shared-1" and "dedicated-000-00-00-h01" in dict(sc.server_list())
    wd = tmp_path / "work"
    config, raw = demo.prepare(sc, wd, base_port=free_port_block(len(sc.servers)), amqp_url=own_vhost)
    axis = demo.AxisProcess(config, wd, timeout=120)
    try:
        conns = axis.start(raw)
        report = asyncio.run(simulate(sc, 3, conns, Options(workers=0, stall_timeout=30), Reporter(quiet=True)))
    finally:
        axis.stop()
    assert [m["agency"] for m in report.moves] == ["000.00.00.H01"]
    assert report.moves[0]["result"] == "moved" and report.moves[0]["http"] == 200
    assert report.unexpected == []
    assert report.agree is True, {k: getattr(report, k) for k in (
        "accepted", "sent", "planned_deliveries", "received", "inbox", "inbox_duplicates", "refused_seen",
        "planned_bad", "refused", "statuses_failed", "unexpected")}
    assert report.sent == 50 and report.received == report.inbox == 120


def test_migration_scenario_reduced_cli(own_vhost: str, tmp_path: Path) -> None:
    """`axis demo --scenario migration --documents 300 --exit --json`: seed-2019's directory, three agencies
    moved live from the shared servers to their own dedicated servers mid-run; every move reported "moved",
    and the simulator, the axis's counters and the inboxes agree."""
    from axis.cli import app

    result = CliRunner().invoke(
        app,
        ["demo", "--scenario", "migration", "--documents", "300", "--exit", "--json", "--quiet", "--workers", "0",
         "--work-dir", str(tmp_path / "work"), "--base-port", str(free_port_block(80))],
        env={"AXIS_AMQP_URL": own_vhost},
    )  # fmt: skip
    assert result.exit_code == 0, result.output[-3000:]
    out = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert [(m["agency"], m["result"]) for m in out["moves"]] == [
        ("000.00.00.H05", "moved"), ("000.00.00.H35", "moved"), ("000.00.00.G24", "moved")]
    assert out["agree"] is True and out["unexpected"] == [] and out["inbox_duplicates"] == 0
    assert out["sent"] == 300 and out["received"] == out["inbox"] == 853


def test_mixed_protocol_agrees(small: scn.Scenario, running: Connections) -> None:
    """--protocol mixed: every other agency submits and sends its statuses through the VPCP SDK's /vxp (signed
    XroadVnpt-* headers, no bearer token); the tallies agree exactly as over /v1 alone (issue 16)."""
    planned = pl.totals(pl.plan(small, 9))
    opts = Options(workers=0, stall_timeout=30, protocol="mixed")
    report = asyncio.run(simulate(small, 9, running, opts, Reporter(quiet=True)))
    assert report.unexpected == []
    assert (report.protocol, report.vxp_agencies) == ("mixed", 4)
    assert report.agree is True
    assert report.accepted == report.sent == DOCUMENTS
    assert report.received == report.inbox == planned.deliveries
    refusals = {**report.refused_sync}
    for k, v in report.refused_async.items():
        refusals[k] = refusals.get(k, 0) + v
    assert refusals == planned.by_reason
    assert report.statuses_sent == planned.statuses and report.statuses_failed == 0
