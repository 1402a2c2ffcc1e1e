"""A 30 MB document through a whole ``axis up`` (processes, HTTPS, real RabbitMQ), with each process's peak RSS:
bench/bigdoc.py at a CI-sized document (the 200 MB figures are in bench/README.md)."""

from __future__ import annotations

import pytest

from bench._common import broker_reachable
from bench.bigdoc import run

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


async def test_30_mb_document_through_axis_up_within_300_mb_per_process() -> None:
    if not broker_reachable():
        pytest.skip("RabbitMQ management API not reachable on :15672")
    res = await run(30, log=lambda _: None)
    assert res["download_same_bytes"] and res["range_ok"] and res["head_ok"]
    assert res["evidence_sha256_same"] and {"submitted", "routed", "stored"} <= set(res["evidence_events"])
    assert res["blob_collected"]
    assert set(res["peak_rss_mb"]) >= {"router-1", "host-1", "host-2", "log-writer"}
    for name, mb in res["peak_rss_mb"].items():
        assert mb <= 300, (name, mb)
