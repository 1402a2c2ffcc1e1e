"""The real edXML samples (../shared/edxml-samples): each refused with a precise reason, never a traceback.

Decisions: a ``Signature`` in the edXML namespace (all signed samples that parse) is SIGNATURE_PROFILE — it is
not an XML-DSig signature at all, so its algorithms are not looked at; unsigned status messages are
SIGNATURE_MISSING; edoc.edxml is not well-formed (XML_MALFORMED). With the Signature moved into the XML-DSig
namespace, the samples' rsa-sha1/sha1 gives WEAK_ALGORITHM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from axis.cli import app
from axis.core.dsig import DSIG, EDXML
from axis.core.reasons import Reason, Refusal
from axis.core.signing import sign
from tests.support.testing import TestPKI, make_pki
from tests.support.verify_reference import ReferenceVerifier

EXPECTED = {
    "dc0bdef0-c7a3-4aaf-b717-777303442973.edxml": Reason.SIGNATURE_PROFILE,
    "edoc.edxml": Reason.XML_MALFORMED,
    "edoc_new.edxml": Reason.SIGNATURE_PROFILE,
    "edoc_replacement.edxml": Reason.SIGNATURE_PROFILE,
    "edoc_revocation.edxml": Reason.SIGNATURE_PROFILE,
    "edoc_update.edxml": Reason.SIGNATURE_PROFILE,
    "status.edxml": Reason.SIGNATURE_MISSING,
    "status_acceptance_03.edxml": Reason.SIGNATURE_MISSING,
    "status_assignment_04.edxml": Reason.SIGNATURE_MISSING,
    "status_cancellation_13.edxml": Reason.SIGNATURE_MISSING,
    "status_change-acceptance_15.edxml": Reason.SIGNATURE_MISSING,
    "status_change-rejection_16.edxml": Reason.SIGNATURE_MISSING,
    "status_finish_06.edxml": Reason.SIGNATURE_MISSING,
    "status_inbox_01.edxml": Reason.SIGNATURE_MISSING,
    "status_processing_05.edxml": Reason.SIGNATURE_MISSING,
    "status_rejection_02.edxml": Reason.SIGNATURE_MISSING,
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), ["000.00.00.G22"], algorithm="ec")


def test_every_sample_is_listed(samples_dir: Path) -> None:
    assert sorted(p.name for p in samples_dir.glob("*.edxml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_refused_with_precise_reason(samples_dir: Path, kit: TestPKI, name: str) -> None:
    data = (samples_dir / name).read_bytes()
    for verifier in (kit.verifier(), ReferenceVerifier(kit.policy())):
        with pytest.raises(Refusal) as exc:
            verifier.verify(data)
        assert exc.value.reason is EXPECTED[name], exc.value.detail


def _in_dsig_namespace(data: bytes) -> bytes:
    root = etree.fromstring(data)
    sig = next(root.iter(f"{{{EDXML}}}Signature"))
    for el in sig.iter("*"):
        el.tag = f"{{{DSIG}}}{etree.QName(el).localname}"
    return etree.tostring(root)


@pytest.mark.parametrize("name", ["edoc_new.edxml", "dc0bdef0-c7a3-4aaf-b717-777303442973.edxml"])
def test_sample_signature_in_dsig_namespace_is_weak(samples_dir: Path, kit: TestPKI, name: str) -> None:
    data = _in_dsig_namespace((samples_dir / name).read_bytes())
    for verifier in (kit.verifier(), ReferenceVerifier(kit.policy())):
        with pytest.raises(Refusal) as exc:
            verifier.verify(data)
        assert exc.value.reason is Reason.WEAK_ALGORITHM
        assert "sha1" in exc.value.detail


def test_unsigned_status_messages_pass_when_signatures_are_optional(samples_dir: Path, kit: TestPKI) -> None:
    verifier = kit.verifier(require_signature=False)
    for path in sorted(samples_dir.glob("status*.edxml")):
        verified = verifier.verify(path.read_bytes())
        assert verified.signer is None and etree.QName(verified.root).localname == "edXML"


def test_cli_verify_reports_each_sample(samples_dir: Path, kit: TestPKI) -> None:
    result = CliRunner().invoke(app, ["envelope", "verify", str(samples_dir), "--ca", str(kit.ca_pem), "--json"])
    assert result.exit_code == 1
    got = {Path(row["file"]).name: row["reason"] for row in map(json.loads, result.stdout.splitlines())}
    assert got == {name: reason.value for name, reason in EXPECTED.items()}


@pytest.mark.parametrize("name", ["edoc_new.edxml", "dc0bdef0-c7a3-4aaf-b717-777303442973.edxml"])
def test_sample_resigned_per_profile_verifies(samples_dir: Path, kit: TestPKI, name: str) -> None:
    """The way out for a real file: replace its signature with a profile one by the sender's certificate."""
    data = (samples_dir / name).read_bytes()
    sender = next(etree.fromstring(data).iter(f"{{{EDXML}}}OrganId")).text or ""
    key, cert = kit.make_cert(sender)
    with pytest.raises(Refusal):
        sign(data, key, cert)
    resigned = sign(data, key, cert, replace=True)
    for verifier in (kit.verifier(), ReferenceVerifier(kit.policy())):
        assert verifier.verify(resigned).signer == sender
    root = etree.fromstring(resigned)
    assert [etree.QName(s).namespace for s in root.iter("{*}Signature")] == [DSIG]
