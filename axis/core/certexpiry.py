"""What expires when in the axis PKI (pure: certificates and CRLs in, facts out; no file or network I/O).

An axis stops working in quiet ways when something of its PKI runs out: the CA certificate (nothing verifies any
more), the CRL's ``nextUpdate`` (verifiers must not trust a stale list), the evidence log's certificate (tree
heads no longer verify), the TLS server certificate (no client connects), an agency's signing certificate (its
documents are refused ``CERT_EXPIRED``) or its TLS client certificate (mutual TLS refuses it), a component's AMQPS
client certificate (``broker: {tls: true}``: the component cannot reach RabbitMQ). X-Road warns
before its certificates expire, Domibus 60 days ahead; axis warns :attr:`ExpiryPolicy.warn_days` (30) ahead.

:func:`certificate_expiry` and :func:`crl_expiry` turn one certificate or CRL into an :class:`Expiring` (kind,
the agency it belongs to, serial, the instant it runs out); :func:`expiry_report` orders many of them for one
instant and says which are due (``warning``: fewer days left than the policy's threshold; ``expired``). The admin app
(:mod:`axis.admin.certificates`) reads the files and serves the result as Prometheus gauges and to the dashboard.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

#: What an :class:`Expiring` is, in the order the report lists kinds at the same instant.
KINDS = ("ca", "crl", "log", "tls-server", "agency", "tls-client", "broker-client")
OK, WARNING, EXPIRED = "ok", "warning", "expired"
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """When an expiry becomes a warning: a certificate with fewer than ``warn_days`` days left (default 30;
    Domibus uses 60); the CRL with fewer than ``crl_warn_days`` (default 2) before its nextUpdate — a CRL lives
    only :data:`axis.core.pki.CRL_DAYS` (7) days and is re-issued long before, so 30 days would warn forever.
    Both must be positive."""

    warn_days: float = 30.0
    crl_warn_days: float = 2.0

    def __post_init__(self) -> None:
        if not self.warn_days > 0 or not self.crl_warn_days > 0:
            raise ValueError("warn_days and crl_warn_days must be positive")

    def threshold(self, kind: str) -> float:
        """Days left under which an item of ``kind`` is a warning."""
        return self.crl_warn_days if kind == "crl" else self.warn_days


@dataclass(frozen=True, slots=True)
class Expiring:
    """One thing of the PKI that runs out: ``kind`` (one of :data:`KINDS`), ``agency`` (the agency code for an
    agency's signing or TLS client certificate, else ""), ``component`` (the broker user of a component's AMQPS
    client certificate, ``broker-client``, else ""), ``serial`` (lower-case hex; "" for a CRL — its number is
    not what an operator looks for), ``subject`` (the certificate's subject or the CRL's issuer, RFC 4514) and
    ``not_after`` (the certificate's notAfter, the CRL's nextUpdate; aware, UTC)."""

    kind: str
    agency: str
    serial: str
    subject: str
    not_after: dt.datetime
    component: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.not_after.tzinfo is None:
            raise ValueError("not_after must be timezone-aware")

    def seconds_left(self, now: dt.datetime) -> float:
        """Seconds from ``now`` to ``not_after`` (negative once it has passed)."""
        return (self.not_after - now).total_seconds()

    def days_left(self, now: dt.datetime) -> float:
        return self.seconds_left(now) / SECONDS_PER_DAY

    def status(self, now: dt.datetime, policy: ExpiryPolicy) -> str:
        """``expired`` at or after ``not_after``; ``warning`` with fewer days left than the policy's threshold for
        this kind (:meth:`ExpiryPolicy.threshold`); else ``ok``."""
        left = self.days_left(now)
        if left <= 0:
            return EXPIRED
        return WARNING if left < policy.threshold(self.kind) else OK


def certificate_expiry(kind: str, cert: x509.Certificate, agency: str = "", component: str = "") -> Expiring:
    """The expiry of one certificate (``kind``: ``ca``, ``log``, ``tls-server``, ``agency``, ``tls-client``,
    ``broker-client``)."""
    if kind == "crl":
        raise ValueError("a CRL's expiry is crl_expiry()")
    return Expiring(kind, agency, format(cert.serial_number, "x"), cert.subject.rfc4514_string(),
                    cert.not_valid_after_utc, component)


def crl_expiry(crl: x509.CertificateRevocationList, max_age: dt.timedelta | None = None) -> Expiring:
    """When a CRL must be replaced: its nextUpdate or, when the verifiers refuse a CRL older than ``max_age``
    (``pki.crl_max_age_hours``), its thisUpdate + ``max_age`` if that comes first. A CRL without a nextUpdate:
    ValueError (the axis always writes one, :func:`axis.core.pki.make_crl`)."""
    next_update = crl.next_update_utc
    if next_update is None:
        raise ValueError("the CRL has no nextUpdate")
    if max_age is not None:
        next_update = min(next_update, crl.last_update_utc + max_age)
    return Expiring("crl", "", "", crl.issuer.rfc4514_string(), next_update)


@dataclass(frozen=True, slots=True)
class ExpiryRow:
    """One line of a report: the :class:`Expiring`, its days left at the report's instant and its status."""

    item: Expiring
    days_left: float
    status: str

    def as_dict(self) -> dict[str, object]:
        i = self.item
        return {"kind": i.kind, "agency": i.agency or None, "component": i.component or None,
                "serial": i.serial or None, "subject": i.subject,
                "not_after": i.not_after.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
                "days_left": round(self.days_left, 2), "status": self.status}


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """Every :class:`ExpiryRow` at ``now``, soonest first (then by kind and agency), and the policy used."""

    now: dt.datetime
    policy: ExpiryPolicy
    rows: tuple[ExpiryRow, ...]

    @property
    def due(self) -> tuple[ExpiryRow, ...]:
        """The rows that need an operator: warnings and expired ones (soonest first)."""
        return tuple(r for r in self.rows if r.status != OK)

    def counts(self) -> dict[str, int]:
        out = {OK: 0, WARNING: 0, EXPIRED: 0}
        for r in self.rows:
            out[r.status] += 1
        return out

    def as_dict(self, *, limit: int | None = None, only_due: bool = False) -> dict[str, object]:
        rows = self.due if only_due else self.rows
        return {"at": self.now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
                "warn_days": self.policy.warn_days, "crl_warn_days": self.policy.crl_warn_days, "counts": self.counts(),
                "items": [r.as_dict() for r in (rows if limit is None else rows[:limit])]}


def expiry_report(items: Iterable[Expiring], now: dt.datetime, policy: ExpiryPolicy = ExpiryPolicy()
                  ) -> ExpiryReport:
    """Order ``items`` for ``now`` (aware): soonest ``not_after`` first, ties by kind (:data:`KINDS` order) and
    agency; each with its days left and status under ``policy``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    order = {k: i for i, k in enumerate(KINDS)}
    ordered = sorted(items, key=lambda e: (e.not_after, order[e.kind], e.agency, e.component, e.serial))
    return ExpiryReport(now, policy, tuple(ExpiryRow(e, e.days_left(now), e.status(now, policy)) for e in ordered))
