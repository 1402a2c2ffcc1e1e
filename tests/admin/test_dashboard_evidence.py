"""The dashboard's evidence panel in a real headless Chromium (as tests/admin/test_dashboard.py): search a document
by id and by sender, see its timeline in leaf order, and see the alarm when the log monitor finds a tree head that
does not extend the one before it. Untrusted text (a DocumentId with markup) is shown as text."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.admin.app import AdminSettings, create_app
from axis.core.evidence import Event, sign_sth
from tests.admin.dashboard_page import signed_in
from tests.admin.test_admin_evidence import DOC, DOC2, G22, H41, H42, T0, Log, events
from tests.admin.test_dashboard import browser  # noqa: F401  (the module's Chromium fixture)
from tests.stats.stats_live import serve
from tests.support.testing import make_pki

pytestmark = pytest.mark.browser
TOKEN = "dashboard-evidence-token"
HOSTILE = f'{G22},2019/03/14,<img src=x onerror="window.__xss=1">'


@pytest.fixture
def log(tmp_path: Path) -> Log:
    from axis.core import pki as pkimod

    p = make_pki(tmp_path / "pki", [G22, H41], algorithm="ec")
    issued = pkimod.issue_log_certificate(p.dir)
    path = tmp_path / "evidence.sqlite3"
    lg = Log(f"sqlite:///{path}", path, p, pkimod.load_key(issued.key_path.read_bytes()),
             issued.cert_path.read_bytes())
    lg.append_and_sign([*events(), Event("submitted", T0 + 100, G22, HOSTILE, 1, "")])
    return lg


def test_search_and_timeline(browser: Any, log: Log, tmp_path: Path) -> None:  # noqa: F811
    settings = AdminSettings(stats_url=f"sqlite:///{tmp_path / 'stats.sqlite3'}", token=TOKEN,
                             amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost", evidence_url=log.url,
                             ca_path=log.pki.ca_pem, crl_path=log.pki.crl_pem, log_check_seconds=0.1)
    with serve(create_app(settings)) as admin:
        page, outside = signed_in(browser, admin, TOKEN, height=1400)
        page.wait_for_function("document.getElementById('log-status').textContent.includes('9 leaves')",
                               timeout=15000)
        assert "consistent" in page.inner_text("#log-status")
        assert page.locator("#log-alarm").is_hidden()

        # one document by its id: the timeline opens at once, in leaf order
        page.fill("#ev-document", DOC)
        page.click("#evidence-search button[type=submit]")
        page.wait_for_function("Number(document.body.dataset.traces || 0) >= 1", timeout=15000)
        items = page.locator("#ev-timeline li")
        assert [items.nth(i).get_attribute("data-type") for i in range(items.count())] == [
            "submitted", "routed", "stored", "stored", "status", "acked"]
        assert [items.nth(i).get_attribute("data-leaf") for i in range(items.count())] == ["0", "1", "3", "4", "5", "7"]
        assert f"stored in the inbox of {H42}" in items.nth(3).inner_text()
        assert f"status 01 from {H41}" in items.nth(4).inner_text()
        assert "2019-03-12 05:53:20 UTC" in items.nth(0).inner_text()
        assert page.get_attribute("#ev-trace", "data-document") == DOC

        # by sender: two documents listed; a click shows one
        page.fill("#ev-document", "")
        page.fill("#ev-sender", G22)
        page.click("#evidence-search button[type=submit]")
        page.wait_for_function("document.querySelectorAll('#ev-results tbody tr').length === 2", timeout=15000)
        assert page.is_hidden("#ev-trace")
        hostile_row = page.locator("#ev-results tbody tr", has_text="onerror")
        assert hostile_row.count() == 1 and hostile_row.get_attribute("data-document") == HOSTILE
        assert HOSTILE in hostile_row.inner_text()  # shown as text
        hostile_row.click()
        page.wait_for_function("Number(document.body.dataset.traces || 0) >= 2", timeout=15000)
        assert page.inner_text("#ev-trace-title").startswith(HOSTILE)
        assert page.evaluate("window.__xss") is None

        # a document from another sender, by id only
        page.fill("#ev-sender", "")
        page.fill("#ev-document", DOC2)
        page.click("#evidence-search button[type=submit]")
        page.wait_for_function("Number(document.body.dataset.traces || 0) >= 3", timeout=15000)
        types = page.locator("#ev-timeline li")
        assert [types.nth(i).get_attribute("data-type") for i in range(types.count())] == ["submitted", "refused"]
        assert "refused: UNKNOWN_RECIPIENT" in types.nth(1).inner_text()

        # a rewritten history: the alarm
        forked = sign_sth(12, int(time.time() * 1000), b"\x01" * 32, log.key, log.cert)
        log.run(lambda store: store.append([Event("routed", T0 + 3, G22, f"{G22},y,{i}", 1, "") for i in range(3)]))
        log.insert_sth(forked)
        page.wait_for_selector("#log-alarm", state="visible", timeout=15000)
        assert "does not extend" in page.inner_text("#log-alarm-text")
        assert "INCONSISTENT" in page.inner_text("#log-status")
        with httpx.Client(base_url=admin, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False) as api:
            assert "axis_log_consistent 0.0" in api.get("/metrics").text
        assert outside == []

        shot = Path(os.environ.get("AXIS_DASHBOARD_EVIDENCE_SCREENSHOT") or tmp_path / "evidence.png")
        page.screenshot(path=str(shot), full_page=True)
        print(f"evidence panel screenshot: {shot}")
        page.context.close()
