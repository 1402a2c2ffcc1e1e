"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright for Python).

Serves the admin app on 127.0.0.1 over a store with known rows, opens the URL `axis up` prints, signs in on its form,
checks that the numbers shown are those of /admin/stats, that the traffic chart is drawn, that rows recorded
later appear without a reload, and that no request leaves 127.0.0.1. Saves a screenshot (path printed; set
AXIS_DASHBOARD_SCREENSHOT to choose it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.admin.app import AdminSettings, create_app
from axis.stats.store import Accepted, Delivered, Refused, StatsStore
from tests.admin.dashboard_page import signed_in
from tests.stats.stats_data import DIRECTORY, G01, G02, H01, H03, KIND, fill
from tests.stats.stats_live import serve

pytestmark = pytest.mark.browser
TOKEN = "dashboard-test-token"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("AXIS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium found: run scripts/browser.sh (apt-get install chromium) or set AXIS_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (pip package) is not installed: pip install playwright (no browser download)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS[1:], headless=True)
        try:
            yield b
        finally:
            b.close()


async def _fill(url: str) -> None:
    store = await StatsStore.open(url)
    try:
        await fill(store)
    finally:
        await store.close()


async def _more_traffic(url: str) -> None:
    """Three more documents (two delivered at once) and one refusal, timestamped now."""
    now = datetime.now(UTC)
    acc, dl = [], []
    for i, (sender, recipient) in enumerate(((G01, H03), (H01, G02), (G02, H01))):
        key = f"{sender}|LIVE{i}|1"
        acc.append(
            Accepted(
                key,
                sender,
                KIND[sender],
                f"LIVE{i}",
                1,
                500,
                ((recipient, KIND[recipient]),),
                4.0,
                now + timedelta(seconds=i),
            )
        )
        if i < 2:
            dl.append(Delivered(key, sender, KIND[sender], recipient, KIND[recipient], f"LIVE{i}", now))
    store = await StatsStore.open(url)
    try:
        await store.record(accepted=acc, delivered=dl, refused=[Refused("live-r", H01, "CERT_REVOKED", 10, now)])
    finally:
        await store.close()


def run_async(coro: Any) -> None:
    """Run a coroutine in a worker thread (Playwright's sync API keeps an event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _text(page: Any, selector: str) -> str:
    return str(page.inner_text(selector)).strip()


def test_dashboard_shows_the_stats_live(browser: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stats.sqlite3'}"
    run_async(_fill(url))
    settings = AdminSettings(
        stats_url=url,
        token=TOKEN,
        directory=DIRECTORY,
        events_seconds=0.5,
        cache_seconds=0.2,
        amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost",
    )
    with serve(create_app(settings)) as admin:
        api = httpx.Client(base_url=admin, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False)
        page, outside = signed_in(browser, admin, TOKEN, locale="vi-VN")  # the URL `axis up` prints, its form
        assert "token" not in page.url  # the token never was in a URL; the cookie carries the session
        page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1", timeout=15000)
        page.evaluate("window.__noReload = 42")

        s = api.get("/admin/stats").json()
        for key in ("agencies", "dedicated", "shared", "sent", "received", "refused", "pending"):
            assert _text(page, f"#{key}") == f"{s[key]:,}", key
        headline = " ".join(_text(page, "#headline").split())
        assert headline == (
            f"{s['agencies']:,} agencies connected, {s['dedicated']:,} on dedicated servers, {s['shared']:,} on "
            f"shared; {s['sent']:,} documents sent, {s['received']:,} received"
        )
        assert "cơ quan kết nối" in _text(page, "#headline-vi")
        for route, count in s["routes"].items():
            assert _text(page, f'#routes td[data-route="{route}"]') == f"{count:,}"
        for reason, count in s["by_reason"].items():
            assert _text(page, f'#reasons [data-reason="{reason}"] .n') == f"{count:,}"
        first_sender = page.locator("#top-senders tbody tr").first
        assert first_sender.get_attribute("data-agency") == s["top_senders"][0]["agency"] == G01
        assert "Văn phòng Chính phủ" in first_sender.inner_text()
        assert page.locator("#top-receivers tbody tr").count() == len(s["top_receivers"])
        # the chart: one path per series with real segments
        for series in ("sent", "received", "refused"):
            d = page.get_attribute(f'#traffic path.line[data-series="{series}"]', "d") or ""
            assert d.startswith("M") and d.count("L") >= 1, (series, d)
        assert page.locator("#latency rect").count() == len(s["latency"]["buckets"])

        # new rows appear without a reload
        run_async(_more_traffic(url))
        page.wait_for_function(
            "document.getElementById('sent').textContent === '7'"
            " && document.getElementById('refused').textContent === '4'",
            timeout=15000,
        )
        assert page.evaluate("window.__noReload") == 42
        after = api.get("/admin/stats").json()
        assert (after["sent"], after["received"], after["refused"]) == (7, 8, 4)
        page.wait_for_function("document.getElementById('received').textContent === '8'", timeout=15000)
        assert _text(page, '#reasons [data-reason="CERT_REVOKED"] .n') == "1"
        assert _text(page, "#live-text") == "live"
        assert outside == []

        shot = Path(os.environ.get("AXIS_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        print(f"dashboard screenshot: {shot}")
        page.context.close()
        api.close()


def test_dashboard_without_token_asks_for_it(browser: Any, tmp_path: Path) -> None:
    settings = AdminSettings(
        stats_url=f"sqlite:///{tmp_path / 's.sqlite3'}",
        token=TOKEN,
        directory=DIRECTORY,
        amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost",
    )
    with serve(create_app(settings)) as admin:
        page = browser.new_page()
        response = page.goto(f"{admin}/")
        assert response is not None and response.status == 401
        assert page.locator("input[name=token]").count() == 1
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1", timeout=15000)
        assert _text(page, "#sent") == "0"
        assert "No traffic yet" in (page.text_content("#traffic") or "")
        page.close()
