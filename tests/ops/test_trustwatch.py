"""axis.ops.trustwatch: one reload per settled change of a trust file, none without a change, a failing reload
does not stop the watch."""

from __future__ import annotations

import time
from pathlib import Path

from axis.ops.trustwatch import TrustWatch, refresh_crl


def wait_until(check: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_one_reload_per_settled_change(tmp_path: Path) -> None:
    crl, cert = tmp_path / "crl.pem", tmp_path / "cert.pem"
    crl.write_text("one")
    calls: list[float] = []

    def on_change() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("a reload that fails")  # logged; the watch goes on

    watch = TrustWatch([crl, cert], on_change, interval=0.05).start()
    try:
        time.sleep(0.3)
        assert calls == []  # nothing changed
        crl.write_text("two, longer")
        assert wait_until(lambda: len(calls) == 1)
        time.sleep(0.3)
        assert len(calls) == 1  # once per change, not once per look
        cert.write_text("a certificate appears")  # an absent file that appears is a change too
        assert wait_until(lambda: len(calls) == 2)
    finally:
        watch.stop()


def test_refresh_crl_when_half_its_life_is_gone(tmp_path: Path) -> None:
    import datetime as dt

    from axis.config import config_from_dict
    from axis.core import pki

    ca = pki.CertificateAuthority.init(tmp_path / "pki", algorithm="ec")
    config = config_from_dict({"pki": {"ca": "pki/ca.cert.pem", "crl": "pki/crl.pem"}, "servers": [],
                               "agencies": []}, base=tmp_path, env={})
    now = dt.datetime.now(dt.UTC)
    assert not refresh_crl(config, now=now)  # a fresh CRL (7 days) is left alone
    before = ca.crl_path.read_bytes()
    assert refresh_crl(config, now=now + dt.timedelta(days=4))  # under half its life left: re-issued
    assert ca.crl_path.read_bytes() != before
    (tmp_path / "pki" / pki.CA_KEY).unlink()  # the CA offline: nothing to do here (the operator's `axis pki crl`)
    assert not refresh_crl(config, now=now + dt.timedelta(days=30))
