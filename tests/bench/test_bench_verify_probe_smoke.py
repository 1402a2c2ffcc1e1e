"""Smoke runs of bench/verify_cli.py and bench/admin_probe.py at tiny sizes: they run and print the documented
JSON (no timing is asserted: the figures are measured by running the benchmarks, not by tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> dict:
    p = subprocess.run([sys.executable, *args, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_verify_cli_bench() -> None:
    data = _bench(str(ROOT / "bench" / "verify_cli.py"), "--envelopes", "12", "--rounds", "1")
    assert data["benchmark"] == "verify_cli" and data["envelopes"] == 12
    assert set(data["median"]) == {"signxml", "axis", "axis_jobs", "signxml_one", "axis_one"}
    for key in ("wall_ratio_serial", "wall_ratio_jobs", "cpu_ratio_serial", "cpu_ratio_jobs", "first_file_wall_ratio"):
        assert data[key] > 0
    assert set(data["cpu_ms_per_doc"]) == {"axis", "axis_jobs", "signxml"}


def test_admin_probe_bench(rabbit_mgmt: tuple[str, tuple[str, str], str]) -> None:
    data = _bench(str(ROOT / "bench" / "admin_probe.py"), "--servers", "3", "--seconds", "2")
    assert data["benchmark"] == "admin_probe" and data["servers"] == 3
    assert [r["kind"] for r in data["runs"]] == ["idle", "before", "after"]
    for key in ("prober_cpu_s_per_min", "servers_probe_cpu_s_per_min", "log_lines_per_min"):
        assert set(data[key]) == {"before", "after", "ratio"}
    assert data["log_lines_per_min"]["after"] == 0  # routine probes are never logged
