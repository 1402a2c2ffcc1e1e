"""The host's delivery-check cache: the same bytes are checked once per process, the moment-dependent part of
the certificate check (validity window, CRL, usage) at every delivery; a reload (a new verifier) starts empty."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from axis.core.reasons import Reason, Refusal
from endpoints.checks import DeliveryChecks, check_delivery
from tests.support.testing import TestPKI, make_pki

A, B = "000.00.00.G01", "000.00.00.H01"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [A, B], algorithm="ec")


def test_same_bytes_checked_once_and_the_model_is_the_same(kit: TestPKI) -> None:
    checks = DeliveryChecks(kit.verifier())
    body = kit.envelope(A, [B])
    first = checks.check(body)
    again = checks.check(body)
    assert checks.hits == 1
    assert again.document_id == first.document_id and again.sender == first.sender
    assert again.recipients == first.recipients and again.subject == first.subject
    assert again.attachments == ()  # the cache keeps no attachment data: the delivery stores the exact bytes
    other = kit.envelope(A, [B], size=20_000)  # other bytes: checked in full
    assert other != body
    checks.check(other)
    assert checks.hits == 1


def test_a_hit_still_checks_the_certificate_at_this_moment(kit: TestPKI) -> None:
    now = [dt.datetime.now(dt.UTC)]
    checks = DeliveryChecks(kit.verifier(clock=lambda: now[0]))
    body = kit.envelope(A, [B])
    checks.check(body)
    now[0] += dt.timedelta(days=365 * 30)  # past the certificate's end
    with pytest.raises(Refusal) as exc:
        checks.check(body)
    assert exc.value.reason is Reason.CERT_EXPIRED


def test_altered_bytes_are_never_a_hit(kit: TestPKI) -> None:
    checks = DeliveryChecks(kit.verifier())
    body = kit.envelope(A, [B])
    checks.check(body)
    with pytest.raises(Refusal) as exc:
        checks.check(body.replace(b"<Subject>", b"<Subject>x", 1))
    assert exc.value.reason in (Reason.XML_MALFORMED, Reason.SIGNATURE_INVALID, Reason.SIGNATURE_PROFILE)


def test_a_revocation_reaches_the_new_verifier_of_a_reload(kit: TestPKI, tmp_path: Path) -> None:
    pki = make_pki(tmp_path, [A, B], algorithm="ec")
    body = pki.envelope(A, [B])
    old = pki.verifier()
    check_delivery(old, body)
    pki.revoke(A)
    check_delivery(old, body)  # the old verifier's CRL: still valid for it
    with pytest.raises(Refusal) as exc:
        check_delivery(pki.verifier(), body)  # a reload: new verifier, new CRL, empty cache
    assert exc.value.reason is Reason.CERT_REVOKED


def test_thread_safe(kit: TestPKI) -> None:
    checks = DeliveryChecks(kit.verifier(), size=8)
    bodies = [kit.envelope(A, [B], subject=f"văn bản {i}") for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        subjects = list(pool.map(lambda b: checks.check(b).subject, bodies * 4))
    assert subjects == [f"văn bản {i}" for i in range(12)] * 4
    assert len(checks._done) <= 8
