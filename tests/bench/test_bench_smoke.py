"""Smoke run of the benchmark harness: it runs end to end at tiny sizes and writes the documented JSON shape.

No timing is asserted (speed is measured by bench/run.py, not by tests); this only proves the harness works,
so that a broken benchmark is noticed in CI rather than on the day the figures are needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"figure", "measured", "unit", "baseline", "baseline_label", "target", "met", "ratio", "notes", "extra"}


def _run(tmp_path: Path, only: str) -> dict:
    out = tmp_path / "bench.json"
    env = {**os.environ, "AXIS_BENCH_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only", only, "--json", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| figure" in p.stdout
    return json.loads(out.read_text())


def _check_shape(data: dict, names: list[str]) -> list[dict]:
    assert {"machine", "sizes", "seconds", "results", "table", "preset"} <= data.keys()
    assert data["preset"] == "smoke"
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    results = data["results"]
    assert results, "no results at all"
    for r in results:
        assert r.keys() >= KEYS, r.keys()
        if r["measured"] is None:
            assert r["notes"].startswith("not measured"), r
            assert r["met"] is None
        else:
            assert isinstance(r["measured"], int | float) and r["measured"] >= 0
            assert isinstance(r["met"], bool) or (r["met"] is None and r["notes"]), r  # no verdict: says why
            if r["baseline"]:
                assert r["ratio"] == pytest.approx(r["measured"] / r["baseline"])
    return results


def test_directory_and_verify_smoke(tmp_path: Path) -> None:
    data = _run(tmp_path, "directory,verify")
    results = _check_shape(data, ["directory", "verify"])
    directory = [r for r in results if r["figure"].startswith("directory")]
    try:
        import axis.config  # noqa: F401
    except ImportError:  # the directory lands with core: until then the harness must say so, not crash
        assert directory[0]["notes"].startswith("not measured")
        return
    assert len(directory) == 2 and all(r["measured"] is not None for r in directory)
    assert directory[0]["extra"]["directory"]["agencies"] == 3000


@pytest.mark.rabbitmq
def test_broker_benchmarks_smoke(tmp_path: Path, amqp_url: str) -> None:
    # amqp_url: skips when the broker is unreachable; the harness makes (and deletes) its own vhosts.
    pytest.importorskip("axis.router", reason="the router lands with core")
    data = _run(tmp_path, "router,memory")
    results = _check_shape(data, ["router", "memory"])
    names = " ".join(r["figure"] for r in results)
    assert "router" in names
    drains = [r for r in results if r["figure"].startswith("router drain")]
    assert drains and drains[0]["measured"] is not None, results
    for r in drains:
        assert r["extra"]["router"]["dead"] == 0  # nothing refused: the corpus is valid
        assert all(d["deliveries"] == r["extra"]["router"]["deliveries"] > 0 for d in r["extra"]["relay"])
    memory = [r for r in results if r["figure"].startswith("router RSS")]
    assert memory and memory[0]["measured"] is not None and len(memory[0]["extra"]["samples"]) >= 2


@pytest.mark.rabbitmq
def test_e2e_and_cpu_smoke(tmp_path: Path, amqp_url: str) -> None:
    # a whole axis twice (axis.ops.up): the load generator (axis.sim.http) reports its own CPU beside httpx's
    pytest.importorskip("axis.ops.up", reason="the axis lands with ops")
    data = _run(tmp_path, "e2e,cpu")
    results = {r["figure"]: r for r in _check_shape(data, ["e2e", "cpu"])}
    assert results["e2e sustained (HTTP submit → every inbox)"]["measured"] is not None, results
    gen = results["load generator's own CPU per document (sustained)"]
    assert gen["measured"] > 0 and gen["baseline"] > 0  # the cheap client beside httpx, same run
    cpu = results["CPU per document, the whole axis (hosts, routers, RabbitMQ, log writer)"]
    assert cpu["measured"] is not None and cpu["measured"] > 0
    kinds = cpu["extra"]["ms_per_doc_by_kind"]
    assert {"host", "router", "rabbitmq", "generator"} <= kinds.keys()
    assert cpu["measured"] == pytest.approx(sum(v for k, v in kinds.items() if k != "generator"))
    # the speed probe sampled the same window: the axis's cost counted in door checks is that division
    extra = cpu["extra"]
    assert extra["door_check_us"] > 0 and extra["probe_cpu_s"] > 0
    assert extra["axis_door_checks_per_doc"] == pytest.approx(1000 * cpu["measured"] / extra["door_check_us"])
    assert results["  the same, counted in door checks (the machine's speed divided out)"]["measured"] == \
        pytest.approx(extra["axis_door_checks_per_doc"])


def test_e2e_rounds_smoke(tmp_path: Path, amqp_url: str) -> None:
    # open-loop rounds at one rate in one axis: each round's latency and every component's CPU per document
    pytest.importorskip("axis.ops.up", reason="the axis lands with ops")
    env = {**os.environ, "AXIS_BENCH_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e.py"), "--rate", "20", "--rounds", "2",
                        "--seconds", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [line for line in p.stdout.splitlines() if "round " in line]
    assert [line.split(":")[0].strip() for line in lines] == ["round 1", "round 2"], p.stdout
    for line in lines:
        assert "p99" in line and "never stored" not in line, line
        assert "host " in line and "router " in line, line


def test_replay_smoke(vhost_url: str) -> None:
    # the seed replay at a tiny size, on this test's own vhost: every process's CPU and every exchange's messages
    from tests.support.testing import free_port_block

    env = {**os.environ, "AXIS_AMQP_URL": vhost_url}
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "sim_replay.py"), "--documents", "60", "--json",
                        "--base-port", str(free_port_block(80))], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["agree"] is True and out["documents"] == 60
    assert {"hosts", "router", "log writer", "admin", "rabbitmq", "simulator"} <= out["cpu_seconds"].keys()
    axis = sum(out["cpu_seconds"][k] for k in ("hosts", "router", "log writer", "admin", "rabbitmq"))
    assert out["axis_cpu_ms_per_document"] == pytest.approx(1000 * axis / 60, abs=0.01)
    assert out["messages_published"]["axis.submit"] > 0 and out["messages_published"]["axis.deliver"] > 0
