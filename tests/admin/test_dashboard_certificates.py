"""The dashboard's certificate warning in a real headless Chromium (as tests/admin/test_dashboard.py): hidden while
nothing expires within 30 days; shown, naming the agency and its days left, once an agency's signing certificate
has 5 days left and another's TLS client certificate has expired; gone again after the renewal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from axis.admin.app import create_app
from axis.config import generate_workdir, load_config
from axis.core import pki
from tests.admin.dashboard_page import signed_in
from tests.admin.test_admin_certificates import short_lived
from tests.admin.test_dashboard import browser  # noqa: F401  (the module's Chromium fixture)
from tests.stats.stats_live import serve

pytestmark = pytest.mark.browser
G22, G01, G03 = "000.00.00.G22", "000.00.00.G01", "000.00.00.G03"


def expired_client_cert(pki_dir: Path, code: str) -> None:
    ca = pki.CertificateAuthority(pki_dir)
    d = pki.client_dir(pki_dir, code)
    key = pki.load_key((d / "key.pem").read_bytes())
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    cert = pki.issue_client_cert(ca.key, ca.cert, code, key.public_key(), not_before=start, days=38)
    (d / "cert.pem").write_bytes(pki.cert_pem(cert))


def test_certificate_warning(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    path, conn = generate_workdir(tmp_path / "w", [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGD", "sh")],
                                  [("d1", "dedicated"), ("sh", "shared")], base_port=18701)
    pki_dir = path.parent / "pki"
    app = create_app(load_config(path))
    with serve(app) as admin:
        page, outside = signed_in(browser, admin, conn["admin"]["token"])
        page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1", timeout=15000)
        page.wait_for_timeout(500)  # certificates.js has polled once
        assert page.locator("#cert-warning").is_hidden()  # every certificate is fresh

        short_lived(pki_dir, G01, 5)
        expired_client_cert(pki_dir, G03)
        app.state.certificates.scan_now()
        page.reload()
        page.wait_for_function("!document.getElementById('cert-warning').hidden", timeout=15000)
        assert page.get_attribute("#cert-warning", "data-expired") == "true"
        text = page.inner_text("#cert-warning")
        assert "2 certificates or CRL need renewing: 1 expired, 1 expiring within 30 days" in text
        rows = page.locator("#cert-due tbody tr")
        assert rows.count() == 2
        first, second = rows.nth(0), rows.nth(1)
        assert (first.get_attribute("data-kind"), first.get_attribute("data-agency")) == ("tls-client", G03)
        assert "expired" in first.get_attribute("class") and "expired 2.0 d ago" in first.inner_text()
        assert (second.get_attribute("data-kind"), second.get_attribute("data-agency")) == ("agency", G01)
        assert "signing certificate" in second.inner_text() and "5.0 d" in second.inner_text()
        shot = tmp_path / "certificates.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")

        pki.CertificateAuthority(pki_dir).issue(G01, name="BCA", algorithm="ec")  # renewed
        pki.issue_client_certificates(pki_dir, [(G03, "BGD")])
        app.state.certificates.scan_now()
        page.reload()
        page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1", timeout=15000)
        page.wait_for_timeout(500)
        assert page.locator("#cert-warning").is_hidden()
        assert outside == []
