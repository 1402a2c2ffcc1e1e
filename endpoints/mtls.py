"""Mutual TLS for agency software (contract section 6; ``client_auth`` per server in the configuration).

The host's TLS layer (:mod:`axis.core.tlsconfig`) asks clients for a certificate and verifies a presented one
against the axis CA; the host protocol (:mod:`endpoints.host`) reads the verified peer certificate once per
connection and hands it to the app in the ASGI scope (``scope["extensions"]["tls"]``, the ASGI TLS extension, with
the parsed :class:`axis.core.pki.ClientCertificate` under :data:`CLIENT_CERTIFICATE`). Per request, once the bearer
token names an agency, :class:`ClientAuth` decides:

- ``off``: nothing is asked or checked;
- ``required``: a request without a client certificate is refused ``401 UNAUTHORIZED``;
- ``optional`` and ``required``: a presented certificate must be an axis TLS client certificate (extendedKeyUsage
  clientAuth — an agency's document-signing certificate is not one) whose subject UID is the token's agency, and
  not revoked (the CRL ``pki.crl``, re-read when the file changes, its signature checked against the CA; a CRL
  that cannot be read or verified, or is stale — past its nextUpdate or older than ``pki.crl_max_age_hours`` —
  refuses every certificate rather than trust a revoked one).

Both credentials must then leak together for someone to act as an agency: the token alone (a log, a proxy, a
shoulder) is not enough, nor the certificate alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from axis.core.pki import ClientCertificate, load_trust, revoked_serials
from axis.core.reasons import Reason, Refusal
from axis.core.tlsconfig import CLIENT_AUTH_OFF, CLIENT_AUTH_REQUIRED
from axis.core.verify import crl_fresh_until

log = logging.getLogger("axis.endpoint")

#: The key, in the ASGI TLS extension (``scope["extensions"]["tls"]``), of the parsed client certificate.
CLIENT_CERTIFICATE = "axis.client_certificate"
#: How often (seconds) at most the CRL file is looked at for a change.
CRL_CHECK_SECONDS = 1.0


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI TLS extension of one connection (None without TLS): the verified client certificate, if any, as
    PEM (``client_cert_chain``) and parsed (:data:`CLIENT_CERTIFICATE`). Called once per connection."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    parsed: ClientCertificate | None = None
    error: str | None = None
    if der:
        try:
            parsed = ClientCertificate.from_der(der)
        except ValueError as exc:  # verified by OpenSSL, yet not parseable here: treat as no usable certificate
            error = f"unreadable client certificate: {exc}"
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": error,
        "tls_version": None,
        "cipher_suite": None,
        CLIENT_CERTIFICATE: parsed,
    }


def client_certificate(scope: Any) -> ClientCertificate | None:
    """The parsed client certificate of the request's connection (None: no TLS, none presented, unreadable)."""
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if extensions else None
    return tls.get(CLIENT_CERTIFICATE) if tls else None


class ClientAuth:
    """One endpoint server's mutual-TLS rule: ``check(agency, scope)`` raises Refusal(UNAUTHORIZED) or returns."""

    def __init__(self, mode: str, ca: Path | None, crl: Path | None, crl_max_age: dt.timedelta | None = None
                 ) -> None:
        self.mode = mode
        self.ca = ca
        self.crl = crl
        self.crl_max_age = crl_max_age
        self._fresh_until: dt.datetime | None = None
        self._revoked: frozenset[int] = frozenset()
        self._crl_problem: str | None = None
        self._crl_stamp: tuple[int, int] | None = None
        self._looked_at = -CRL_CHECK_SECONDS

    def check(self, agency: str, scope: Any) -> None:
        if self.mode == CLIENT_AUTH_OFF:
            return
        cert = client_certificate(scope)
        if cert is None:
            if self.mode == CLIENT_AUTH_REQUIRED:
                raise Refusal(Reason.UNAUTHORIZED, "this server requires your agency's TLS client certificate "
                                                   "(mutual TLS: connections.json's tls_cert and tls_key)")
            return
        if not cert.client_auth:
            raise Refusal(Reason.UNAUTHORIZED, "the certificate presented is not a TLS client certificate "
                                               "(extendedKeyUsage clientAuth)")
        if cert.uid != agency:
            raise Refusal(Reason.UNAUTHORIZED, "the TLS client certificate is not your agency's (its subject UID "
                                               "differs from the token's agency)")
        self._refresh()
        if self._crl_problem is not None:
            raise Refusal(Reason.UNAUTHORIZED, f"client certificates cannot be checked: {self._crl_problem}")
        if self._fresh_until is not None and dt.datetime.now(dt.UTC) > self._fresh_until:
            raise Refusal(Reason.UNAUTHORIZED, "client certificates cannot be checked: the CRL is stale since "
                                               f"{self._fresh_until.isoformat()}")
        if cert.serial in self._revoked:
            raise Refusal(Reason.UNAUTHORIZED, "your TLS client certificate is revoked")

    def _refresh(self) -> None:
        """Re-read the CRL when its file changed (looked at no more than once per CRL_CHECK_SECONDS)."""
        if self.crl is None:
            return
        now = time.monotonic()
        if now - self._looked_at < CRL_CHECK_SECONDS:
            return
        self._looked_at = now
        try:
            st = os.stat(self.crl)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._crl_stamp:
                return
            if self.ca is None:
                raise ValueError("no CA (pki.ca) to check the CRL against")
            ca_pem, crl_pem = self.ca.read_bytes(), self.crl.read_bytes()
            self._revoked = revoked_serials(ca_pem, crl_pem)
            self._fresh_until = crl_fresh_until(load_trust(ca_pem, crl_pem)[1], self.crl_max_age)
            self._crl_stamp, self._crl_problem = stamp, None
        except (OSError, ValueError) as exc:
            if self._crl_problem is None:
                log.error("the CRL %s cannot be used: %s — every client certificate is refused", self.crl, exc)
            self._crl_problem, self._crl_stamp = f"the CRL cannot be read ({type(exc).__name__})", None
