"""Planned messages become real signed edXML; bad ones are bad in exactly the planned way."""

from __future__ import annotations

from pathlib import Path

import pytest

from axis.core import envelope, schema
from axis.core.pki import CertificateAuthority, load_trust
from axis.core.reasons import Reason, Refusal
from axis.core.verify import Verifier, VerifyPolicy
from axis.sim import build, plan
from axis.sim import scenario as scn


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[scn.Scenario, build.Builder, Verifier]:
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.init(d, algorithm="ec")
    sc = scn.scale(scn.load("seed-2019"), agencies=12, documents=150, bad=25)
    keys = {}
    for a in sc.agencies:
        issued = ca.issue(a.code, name=a.name, algorithm="ec")
        keys[a.code] = build.KeyPaths(str(issued.key_path), str(issued.cert_path), a.name)
    anchors, crls = load_trust(ca.ca_path, ca.crl_path)
    return sc, build.Builder(keys), Verifier(VerifyPolicy(trust_anchors=anchors, crls=crls))


def test_good_documents_verify_and_carry_the_plan(setup: tuple[scn.Scenario, build.Builder, Verifier]) -> None:
    sc, builder, verifier = setup
    items = [p for p in plan.plan(sc, 4) if isinstance(p, plan.PlannedMessage)]
    good = [p for p in items if p.kind == "good"]
    assert len(good) == 150
    for p in good:
        data = builder.build(p)
        v = verifier.verify(data)
        schema.validate(v.root)
        msg = envelope.from_element(v.root)
        assert isinstance(msg, envelope.DocumentMessage)
        assert v.signer == p.sender == msg.sender.organ_id
        assert tuple(r.organ_id for r in msg.recipients) == p.recipients
        assert msg.document_id == p.document_id
        assert msg.subject == p.subject
        assert msg.business.doc_type == p.doc_type
        if p.doc_type:
            assert msg.business.document_id == p.related_document_id
        assert [a.name for a in msg.attachments] == [a.name for a in p.attachments]
        assert [len(a.data) for a in msg.attachments] == [a.size for a in p.attachments]
    assert builder.unsigned(good[0]) == builder.unsigned(good[0])  # deterministic (ECDSA itself is randomized)


def test_bad_envelopes_fail_as_planned(setup: tuple[scn.Scenario, build.Builder, Verifier]) -> None:
    sc, builder, verifier = setup
    bad = [p for p in plan.plan(sc, 4) if isinstance(p, plan.PlannedMessage) and p.kind == "bad"]
    assert len(bad) == 25
    seen = set()
    for p in bad:
        data = builder.build(p)
        seen.add(p.expect)
        if p.expect in ("UNKNOWN_RECIPIENT", "FORBIDDEN"):
            # intact and signed by the sender: the directory (router) or the credentials (endpoint) refuse it
            assert verifier.verify(data).signer == p.sender
            continue
        with pytest.raises(Refusal) as exc:
            verifier.verify(data)
        assert exc.value.reason == Reason(p.expect)
    assert seen == {"SIGNATURE_INVALID", "UNKNOWN_RECIPIENT", "SIGNER_MISMATCH", "FORBIDDEN", "XML_MALFORMED"}


def test_unsigned_mode(setup: tuple[scn.Scenario, build.Builder, Verifier], tmp_path: Path) -> None:
    sc, builder, _ = setup
    unsigned = build.Builder(builder.keys, sign=False)
    p = next(p for p in plan.plan(sc, 4) if isinstance(p, plan.PlannedMessage) and p.kind == "good")
    data = unsigned.build(p)
    assert b"Signature" not in data
    assert envelope.parse(data).document_id == p.document_id
