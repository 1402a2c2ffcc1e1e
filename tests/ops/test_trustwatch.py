"""axis.ops.trustwatch: one reload per settled change of a trust file, none without a change, a failing reload
does not stop the watch."""

from __future__ import annotations

import time
from pathlib import Path

from axis.ops.trustwatch import TrustWatch


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
