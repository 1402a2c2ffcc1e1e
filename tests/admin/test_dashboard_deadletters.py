"""The dashboard's dead letters panel in a real headless Chromium (as tests/admin/test_dashboard.py), against the
real RabbitMQ: three dead letters in axis.dead are listed oldest first; Resend puts one back on axis.submit as if
just submitted (its endpoint server named) and Discard (after the confirmation) removes another; the panel follows,
and a dead letter whose DocumentId holds markup is shown as text."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from axis.admin.app import AdminSettings, create_app
from axis.broker.transport import declare_topology
from axis.core.wire import EX_DLX, H_SERVER, Q_DEAD, Q_SUBMISSIONS, read_events
from tests.admin.dashboard_page import signed_in
from tests.admin.test_dashboard import browser  # noqa: F401  (the module's Chromium fixture)
from tests.stats.stats_live import serve

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq]
TOKEN = "dashboard-dead-letters-token"
HOSTILE = '<img src=x onerror="window.__xss=1">'
LETTERS = [("000.00.00.G22", "2026/11/28,1/VPCP", "UNKNOWN_RECIPIENT"),
           ("000.00.00.H53", HOSTILE, "CERT_REVOKED"),
           ("000.00.00.G01", "2026/11/28,3/BCA", "UNKNOWN_SENDER")]


def _run(coro: Any) -> Any:
    """A coroutine to completion in a thread of its own (Playwright's sync API holds this thread's event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _prepare(url: str) -> None:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await declare_topology(channel, ["d1"])
        dlx = await channel.get_exchange(EX_DLX)
        for i, (sender, document_id, reason) in enumerate(LETTERS):
            headers = {"x-axis-reason": reason, "x-axis-detail": f"refused: {reason}", "x-axis-server": "d1",
                       "x-axis-kind": "document", "x-axis-sender": sender, "x-axis-document-id": document_id,
                       "x-axis-dead-at": 1_764_000_000_000 + i * 1000}
            await dlx.publish(aio_pika.Message(f"<doc n='{i}'/>".encode(), headers=headers, message_id=f"m{i}"),
                              routing_key="")
    finally:
        await conn.close()


async def _drain(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    conn = await aio_pika.connect(url)
    try:
        q = await (await conn.channel()).declare_queue(queue, passive=True)
        out = []
        while (m := await q.get(no_ack=True, fail=False)) is not None:
            out.append(m)
        return out
    finally:
        await conn.close()


def test_dead_letters_panel_resend_and_discard(browser: Any, vhost_url: str, tmp_path: Path) -> None:  # noqa: F811
    _run(_prepare(vhost_url))
    settings = AdminSettings(stats_url=f"sqlite:///{tmp_path / 'stats.sqlite3'}", token=TOKEN, amqp_url=vhost_url)
    with serve(create_app(settings)) as admin:
        page, outside = signed_in(browser, admin, TOKEN, height=1600)
        page.wait_for_function("document.querySelectorAll('#dead-letters tbody tr').length === 3", timeout=20000)
        rows = page.locator("#dead-letters tbody tr")
        assert [rows.nth(i).get_attribute("data-reason") for i in range(3)] == [r for _, _, r in LETTERS]
        assert page.inner_text("#dl-count") == "3 waiting"
        assert "2025-11-24 16:00:00 UTC" in rows.nth(0).inner_text()
        assert HOSTILE in rows.nth(1).inner_text() and page.evaluate("window.__xss") is None  # text, not markup

        # Resend the first: it leaves the panel and is on axis.submit again, as if d1 had just submitted it
        rows.nth(0).locator("button.dl-resend").click()
        page.wait_for_function("document.querySelectorAll('#dead-letters tbody tr').length === 2", timeout=20000)
        assert "Resent 2026/11/28,1/VPCP" in page.inner_text("#dl-message")
        # Discard the hostile one: the confirmation is asked (dismissed: nothing happens), then accepted
        page.once("dialog", lambda d: d.dismiss())
        page.locator("#dead-letters tbody tr").nth(0).locator("button.dl-discard").click()
        page.wait_for_timeout(500)
        assert page.locator("#dead-letters tbody tr").count() == 2
        page.once("dialog", lambda d: d.accept())
        page.locator("#dead-letters tbody tr").nth(0).locator("button.dl-discard").click()
        page.wait_for_function("document.querySelectorAll('#dead-letters tbody tr').length === 1", timeout=20000)
        assert page.locator("#dead-letters tbody tr").nth(0).get_attribute("data-reason") == "UNKNOWN_SENDER"
        assert page.inner_text("#dl-count") == "1 waiting"
        assert outside == []
        shot = Path(os.environ.get("AXIS_DASHBOARD_DEAD_LETTERS_SCREENSHOT") or tmp_path / "dead-letters.png")
        page.screenshot(path=str(shot), full_page=True)
        print(f"dead letters panel screenshot: {shot}")
        page.context.close()

    resent = _run(_drain(vhost_url, Q_SUBMISSIONS))
    assert [m.body for m in resent] == [b"<doc n='0'/>"]
    assert resent[0].headers[H_SERVER] == "d1" and resent[0].headers["x-axis-kind"] == "document"
    assert "x-axis-reason" not in resent[0].headers
    left = _run(_drain(vhost_url, Q_DEAD))
    assert [m.body for m in left] == [b"<doc n='2'/>"]
    events = [e for m in _run(_drain(vhost_url, "axis.evidence")) for e in read_events(m.body)]
    assert [(e.type, e.action, e.admin, e.sender) for e in events] == [
        ("admin", "resend", "dashboard", "000.00.00.G22"), ("admin", "discard", "dashboard", "000.00.00.H53")]
