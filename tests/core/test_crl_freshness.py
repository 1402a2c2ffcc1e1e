"""A stale CRL vouches for nothing (issue 18 item 4): past its nextUpdate, or older than ``crl_max_age``, signed
documents are refused CERT_UNTRUSTED with a reason that says so — never accepted on an old list, never a crash."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from axis.core import pki
from axis.core.reasons import Reason, Refusal
from axis.core.verify import crl_fresh_until
from tests.support.testing import TestPKI, make_pki

G22 = "000.00.00.G22"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def tpki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("crl"), [G22], algorithm="ec")


def crl_issued(t: TestPKI, at: dt.datetime, days: int) -> bytes:
    return pki.make_crl(t.ca.key, t.ca.cert, [], days=days, now=at).public_bytes(serialization.Encoding.PEM)


def refusal(t: TestPKI, crl: bytes, at: dt.datetime, **policy: object) -> Refusal | None:
    from axis.core.verify import Verifier, VerifyPolicy

    verifier = Verifier(VerifyPolicy.from_files(t.ca_pem, crl, clock=lambda: at, **policy))  # type: ignore[arg-type]
    try:
        verifier.verify(t.envelope(G22))
    except Refusal as r:
        return r
    return None


def test_a_fresh_crl_is_used(tpki: TestPKI) -> None:
    assert refusal(tpki, crl_issued(tpki, NOW - dt.timedelta(hours=1), 7), NOW) is None


def test_past_next_update_is_stale(tpki: TestPKI) -> None:
    r = refusal(tpki, crl_issued(tpki, NOW - dt.timedelta(days=8), 7), NOW)
    assert r is not None and r.reason is Reason.CERT_UNTRUSTED and "CRL is stale" in r.detail


def test_older_than_the_configured_max_age_is_stale(tpki: TestPKI) -> None:
    crl = crl_issued(tpki, NOW - dt.timedelta(hours=3), 7)
    assert refusal(tpki, crl, NOW, crl_max_age=dt.timedelta(hours=4)) is None
    r = refusal(tpki, crl, NOW, crl_max_age=dt.timedelta(hours=2))
    assert r is not None and r.reason is Reason.CERT_UNTRUSTED and "axis pki crl" in r.detail


def test_an_expired_certificate_is_still_reported_as_expired(tpki: TestPKI) -> None:
    """The certificate's own validity is checked first: a stale list does not hide CERT_EXPIRED."""
    r = refusal(tpki, crl_issued(tpki, NOW, 7), NOW + dt.timedelta(days=3650))
    assert r is not None and r.reason is Reason.CERT_EXPIRED


def test_the_deadline_is_the_earliest_of_all_limits(tpki: TestPKI) -> None:
    a = pki.load_crl(crl_issued(tpki, NOW, 7))
    b = pki.load_crl(crl_issued(tpki, NOW - dt.timedelta(days=1), 3))
    assert crl_fresh_until((a,)) == a.next_update_utc
    assert crl_fresh_until((a, b)) == b.next_update_utc
    assert crl_fresh_until((a,), dt.timedelta(hours=1)) == a.last_update_utc + dt.timedelta(hours=1)
    assert crl_fresh_until(()) is None  # no CRL configured: nothing goes stale


def test_config_crl_max_age(tmp_path: Path) -> None:
    from axis.config import ConfigError, config_from_dict

    raw = {"pki": {"ca": "ca.pem", "crl_max_age_hours": 48}, "servers": [], "agencies": []}
    assert config_from_dict(raw, base=tmp_path, env={}).pki.crl_max_age == dt.timedelta(hours=48)
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigError, match="crl_max_age_hours"):
            config_from_dict({**raw, "pki": {"crl_max_age_hours": bad}}, base=tmp_path, env={})
    assert config_from_dict({"servers": [], "agencies": []}, base=tmp_path, env={}).pki.crl_max_age is None
