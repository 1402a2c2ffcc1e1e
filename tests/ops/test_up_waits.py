"""`axis up` waits for a slow broker with a progress line and a clear deadline (issue 14 item 7)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from axis.config import generate_workdir
from axis.ops.progress import ProgressLine
from axis.ops.up import StartError, start


def test_progress_line_rewrites_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    line = ProgressLine(out)
    line("waiting for RabbitMQ:", "1s of 300s")
    line.done()
    assert out.getvalue() == "\r\x1b[Kwaiting for RabbitMQ: 1s of 300s\n"


def test_progress_line_in_a_log_prints_on_each_new_subject_and_then_rarely() -> None:
    out = io.StringIO()
    line = ProgressLine(out, every=3600)
    line("waiting for RabbitMQ:", "1s of 300s")
    line("waiting for RabbitMQ:", "2s of 300s")  # same subject, too soon: not repeated
    line("starting:", "0 of 4 ready")
    line.done()
    assert out.getvalue().splitlines() == ["waiting for RabbitMQ: 1s of 300s", "starting: 0 of 4 ready"]


def test_up_gives_up_on_an_absent_broker_at_its_deadline_with_progress(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path, known = generate_workdir(tmp_path / "w", [("000.00.00.G22", "VPCP", "d1")], [("d1", "dedicated")],
                                   base_port=18901, amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/axis")
    lines: list[tuple[str, str]] = []
    with pytest.raises(StartError) as info:
        start(path, tmp_path / "w", known, broker_wait=1.5, progress=lambda a, b: lines.append((a, b)))
    assert f"RabbitMQ at amqp://127.0.0.1:{port}/axis did not accept a connection within 2s" in str(info.value)
    assert "--broker-wait" in str(info.value)
    assert lines and all(a == f"waiting for RabbitMQ at amqp://127.0.0.1:{port}/axis:" for a, _ in lines)
    assert lines[-1][1].endswith(")") and "of 2s" in lines[-1][1]
    assert not (tmp_path / "w" / "logs").exists() or not any((tmp_path / "w" / "logs").glob("router-*.log"))


@pytest.mark.rabbitmq
@pytest.mark.slow
async def test_up_waits_for_a_broker_that_comes_late_then_starts_everything(tmp_path: Path, vhost_url: str) -> None:
    """The issue's case: the broker is not there when `axis up` starts (here its port opens 3 s later); `axis up`
    says what it waits for, then brings every process up — none exits with status 1."""
    import asyncio

    from tests.broker.test_first_connection import _free_port, forwarder
    from tests.integration.conftest import AGENCIES, SERVERS
    from tests.support.testing import free_port_block

    port = _free_port()
    base = free_port_block(len(SERVERS) + 1)
    work = tmp_path / "w"
    path, known = generate_workdir(work, AGENCIES, SERVERS, base_port=base + 1, admin_port=base,
                                   amqp_url=vhost_url.replace("127.0.0.1:5672", f"127.0.0.1:{port}"))
    lines: list[tuple[str, str]] = []
    starting = asyncio.create_task(asyncio.to_thread(
        start, path, work, known, broker_wait=60, timeout=120, progress=lambda a, b: lines.append((a, b))))
    await asyncio.sleep(3)
    assert not starting.done() and lines and lines[-1][0].startswith("waiting for RabbitMQ")
    async with forwarder(port):
        run = await asyncio.wait_for(starting, 180)
        try:
            assert run.connections_path == work / "connections.json" and not run.failed()
            names = {n for n, _ in run.procs}
            assert {"admin", "log-writer", "router-1", "host-1"} <= names
            assert all(p.poll() is None for _, p in run.procs)
            assert any(a.startswith("RabbitMQ at") and "answered" in a for a, _ in lines)
            assert any(a == "starting:" for a, _ in lines)
        finally:
            await asyncio.to_thread(run.stop)
