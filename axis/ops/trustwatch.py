"""Rotation without restarts: ``axis up`` reloads its processes when a trust file changes.

The files are the CRL (``pki.crl``: a revocation, or ``axis pki crl`` issuing a fresh one before the old goes
stale), the CA certificate (``pki.ca``) and the TLS server certificate and key (``tls.cert``/``tls.key``:
``axis pki issue-server`` re-issued). :class:`TrustWatch` looks at their (mtime, size, inode) every ``interval``
seconds and, after a change has settled for one interval (a file being written is not read half-way), calls
``on_change`` once — the supervisor then sends SIGHUP to every child that handles it (:mod:`axis.config.reload`):
routers and endpoint hosts build a new verifier (the new CRL), hosts and the admin app load the new server
certificate for new connections (connections already open keep theirs until they close). Broker client
certificates are renewed by ``axis up`` at start (:func:`axis.broker.users.issue_component_certificates`).

Where the CA's key sits beside ``pki.ca`` (the demo's and a single-machine axis's work dir), the watch also keeps
the CRL fresh (:func:`refresh_crl`): at start and every hour, a CRL with less than half its life left is re-issued
(the same revocations), so an axis left running never goes stale by itself. With the CA offline — as it should be
in production — the operator runs ``axis pki crl`` on a schedule; the ``axis_crl_days_left`` gauge and the alert
rules watch it.

Monitoring never breaks delivery: a file that cannot be read is simply "absent" until it can; an exception in
``on_change`` is logged and the watch goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from axis.config import Config

log = logging.getLogger("axis.ops.trustwatch")

Stamp = tuple[int, int, int] | None


def trust_files(config: Config) -> list[Path]:
    """The files whose change makes the axis reload: CRL, CA, TLS server certificate and key (those configured)."""
    files = [config.pki.crl, config.pki.ca]
    if config.tls.enabled:
        files += [config.tls.cert, config.tls.key]
    return [f for f in files if f is not None]


def stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def refresh_crl(config: Config, *, now: dt.datetime | None = None) -> bool:
    """Re-issue the CRL when the CA's key is at hand and the CRL has less than half its life left (or is missing
    or unreadable); True when a new one was written."""
    from axis.core.pki import CA_KEY, CertificateAuthority, PkiError, load_crl

    if config.pki.ca is None or config.pki.crl is None or not (config.pki.ca.parent / CA_KEY).is_file():
        return False
    now = now or dt.datetime.now(dt.UTC)
    try:
        crl = load_crl(config.pki.crl.read_bytes())
        next_update = crl.next_update_utc
        due = next_update is None or next_update - now < (next_update - crl.last_update_utc) / 2
    except (OSError, ValueError):
        due = True
    if not due:
        return False
    try:
        ca = CertificateAuthority(config.pki.ca.parent)
        if ca.crl_path.resolve() != config.pki.crl.resolve():
            return False  # a CRL this CA directory does not own
        ca.write_crl()
    except (PkiError, OSError) as exc:
        log.error("cannot re-issue the CRL %s: %s", config.pki.crl, exc)
        return False
    log.info("re-issued the CRL %s (it had less than half its life left)", config.pki.crl)
    return True


class TrustWatch:
    """Calls ``on_change`` when any of ``files`` changed and then stayed unchanged for one ``interval``."""

    def __init__(self, files: Iterable[Path], on_change: Callable[[], None], *, interval: float = 2.0,
                 hourly: Callable[[], object] | None = None) -> None:
        self.files = list(files)
        self.on_change = on_change
        self.interval = interval
        self.hourly = hourly  # housekeeping (refresh_crl), run on the watch's thread at start and every hour
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stamps(self) -> list[Stamp]:
        return [stamp(f) for f in self.files]

    def start(self) -> TrustWatch:
        self._thread = threading.Thread(target=self._run, name="axis-trust-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)

    def _housekeeping(self) -> None:
        if self.hourly is not None:
            try:
                self.hourly()
            except Exception:
                log.exception("trust housekeeping failed")

    def _run(self) -> None:
        seen = self.stamps()
        pending: list[Stamp] | None = None  # a change not settled yet
        self._housekeeping()
        next_housekeeping = time.monotonic() + 3600
        while not self._stop.wait(self.interval):
            if time.monotonic() >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = time.monotonic() + 3600
            now = self.stamps()
            if pending is not None and now == pending:
                seen, pending = now, None
                try:
                    self.on_change()
                except Exception:
                    log.exception("reloading after a trust file changed failed")
            elif now != seen:
                pending = now
            else:
                pending = None
