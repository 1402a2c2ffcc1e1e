"""axis.core.certexpiry: what expires when, from real certificates and CRLs made by axis.core.pki."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from axis.core import pki
from axis.core.certexpiry import (
    EXPIRED,
    OK,
    WARNING,
    Expiring,
    ExpiryPolicy,
    certificate_expiry,
    crl_expiry,
    expiry_report,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
G22 = "000.00.00.G22"


@pytest.fixture(scope="module")
def ca() -> tuple[pki.PrivateKey, Any]:
    return pki.make_ca(algorithm="ec", now=NOW - dt.timedelta(days=1), days=3650)


def agency_cert(ca: tuple[pki.PrivateKey, Any], code: str, days_left: float) -> Any:
    """A year-long agency certificate whose notAfter is ``days_left`` days after NOW."""
    key, cert = ca
    start = NOW + dt.timedelta(days=days_left - 365)
    return pki.issue_cert(key, cert, code, pki.new_key("ec").public_key(), not_before=start, days=365)


def test_days_left_and_status_of_an_agency_certificate(ca: tuple[pki.PrivateKey, Any]) -> None:
    cert = agency_cert(ca, G22, 20)  # notAfter 20 days after NOW
    e = certificate_expiry("agency", cert, G22)
    assert e.kind == "agency" and e.agency == G22 and e.serial == format(cert.serial_number, "x")
    assert e.not_after == NOW + dt.timedelta(days=20)
    assert e.days_left(NOW) == pytest.approx(20.0)
    assert e.status(NOW, ExpiryPolicy()) == WARNING  # under 30 days
    assert e.status(NOW, ExpiryPolicy(warn_days=10)) == OK
    assert e.status(NOW + dt.timedelta(days=20), ExpiryPolicy()) == EXPIRED  # at notAfter: expired
    assert e.days_left(NOW + dt.timedelta(days=21)) == pytest.approx(-1.0)
    assert "UID=000.00.00.G22" in e.subject or "0.9.2342.19200300.100.1.1=000.00.00.G22" in e.subject


def test_the_boundary_is_30_days(ca: tuple[pki.PrivateKey, Any]) -> None:
    e = certificate_expiry("agency", agency_cert(ca, G22, 30), G22)
    assert e.status(NOW, ExpiryPolicy()) == OK  # exactly 30 days left: not under 30
    assert e.status(NOW + dt.timedelta(seconds=1), ExpiryPolicy()) == WARNING


def test_ca_and_crl(ca: tuple[pki.PrivateKey, Any]) -> None:
    key, cert = ca
    e = certificate_expiry("ca", cert)
    assert e.kind == "ca" and e.agency == "" and e.days_left(NOW) == pytest.approx(3649.0, abs=0.01)
    crl = pki.make_crl(key, cert, [], days=7, now=NOW)
    c = crl_expiry(crl)
    assert c.kind == "crl" and c.serial == "" and c.not_after == NOW + dt.timedelta(days=7)
    assert c.status(NOW, ExpiryPolicy()) == OK  # a CRL warns 2 days before its nextUpdate, not 30
    assert c.status(NOW + dt.timedelta(days=5, seconds=1), ExpiryPolicy()) == WARNING
    assert c.status(NOW + dt.timedelta(days=5, seconds=1), ExpiryPolicy(crl_warn_days=1)) == OK
    # verifiers that refuse a CRL older than 24 h: it must be replaced a day after its thisUpdate (NOW - 5 min)
    assert crl_expiry(crl, dt.timedelta(hours=24)).not_after == NOW - dt.timedelta(minutes=5) + dt.timedelta(days=1)
    assert crl_expiry(crl, dt.timedelta(days=30)).not_after == c.not_after  # nextUpdate comes first
    with pytest.raises(ValueError, match="crl_expiry"):
        certificate_expiry("crl", cert)


def test_report_orders_soonest_first_and_counts(ca: tuple[pki.PrivateKey, Any]) -> None:
    items = [
        certificate_expiry("agency", agency_cert(ca, "000.00.00.G01", 200), "000.00.00.G01"),
        certificate_expiry("tls-client", agency_cert(ca, G22, 5), G22),
        certificate_expiry("agency", agency_cert(ca, G22, -2), G22),
        certificate_expiry("ca", ca[1]),
    ]
    report = expiry_report(items, NOW)
    assert [(r.item.kind, r.item.agency, r.status) for r in report.rows] == [
        ("agency", G22, EXPIRED), ("tls-client", G22, WARNING), ("agency", "000.00.00.G01", OK), ("ca", "", OK)]
    assert report.counts() == {OK: 2, WARNING: 1, EXPIRED: 1}
    assert [r.item.kind for r in report.due] == ["agency", "tls-client"]
    d = report.as_dict(only_due=True)
    listed: Any = d["items"]
    assert d["counts"] == {OK: 2, WARNING: 1, EXPIRED: 1} and len(listed) == 2
    first = listed[0]
    assert first["status"] == EXPIRED and first["days_left"] == -2.0 and first["not_after"].endswith("Z")
    assert report.as_dict(limit=1)["items"] == [report.rows[0].as_dict()]


def test_ties_are_ordered_by_kind_then_agency() -> None:
    when = NOW + dt.timedelta(days=3)
    items = [Expiring("tls-client", "B01", "2", "s", when), Expiring("agency", "B01", "1", "s", when),
             Expiring("agency", "A01", "3", "s", when), Expiring("crl", "", "", "s", when)]
    assert [(r.item.kind, r.item.agency) for r in expiry_report(items, NOW).rows] == [
        ("crl", ""), ("agency", "A01"), ("agency", "B01"), ("tls-client", "B01")]


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Expiring("passport", "", "", "", NOW)
    with pytest.raises(ValueError, match="timezone"):
        Expiring("ca", "", "", "", NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone"):
        expiry_report([], NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="positive"):
        ExpiryPolicy(warn_days=0)
    with pytest.raises(ValueError, match="positive"):
        ExpiryPolicy(crl_warn_days=-1)
