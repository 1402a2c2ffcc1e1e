"""The simulator's VPCP SDK speakers (axis.sim.vxp), without a server: who speaks /vxp under each --protocol,
the messagetype of its own documents, and the SDK's answers read back as /v1 answers."""

from __future__ import annotations

import pytest

from axis.core import envelope
from axis.sim.api import Answer
from axis.sim.connections import from_dict
from axis.sim.vxp import message_type, v1_answer, vxp_agencies

CODES = ["000.00.00.G01", "000.00.00.G03", "000.00.00.G22", "000.00.00.H53", "000.00.00.H41"]


def conns():  # type: ignore[no-untyped-def]
    return from_dict({"ca": None, "admin": {"url": "https://127.0.0.1:1", "token": "a"},
                      "agencies": [{"code": c, "name": c, "server": "s", "kind": "shared",
                                    "endpoint": "https://127.0.0.1:2", "token": f"t-{c}"} for c in CODES]})


def test_who_speaks_vxp() -> None:
    c = conns()
    assert vxp_agencies(c, "v1") == {}
    assert sorted(vxp_agencies(c, "vxp").values()) == sorted(CODES)
    mixed = vxp_agencies(c, "mixed")
    assert sorted(mixed.values()) == sorted(CODES)[::2] and all(t == f"t-{code}" for t, code in mixed.items())
    with pytest.raises(ValueError):
        vxp_agencies(c, "soap")


def test_message_type_of_own_documents() -> None:
    new = envelope.new_document(CODES[0], [CODES[1]], "a")
    assert message_type(envelope.build(new)) == "edoc"
    for kind in ("revocation", "update"):
        doc = envelope.new_document(CODES[0], [CODES[1]], "b", doc_type=kind, related_document_id=new.document_id)
        assert message_type(envelope.build(doc)) == kind
    assert message_type(b"<edXML><unclosed>") == "edoc"


def test_sdk_answers_read_as_v1() -> None:
    ok = v1_answer(Answer(200, {"status": "OK", "ErrorCode": "0", "ErrorDesc": "Success", "DocId": "abc"}))
    assert (ok.status, ok.body, ok.ok) == (202, {"id": "abc"}, True)
    refused = v1_answer(Answer(200, {"status": "FAIL", "ErrorCode": "SIGNATURE_INVALID", "ErrorDesc": "x",
                                     "DocId": ""}))
    assert (refused.status, refused.reason, refused.ok) == (422, "SIGNATURE_INVALID", False)
    busy = v1_answer(Answer(503, {"status": "FAIL", "ErrorCode": "UNAVAILABLE", "ErrorDesc": "retry"}))
    assert (busy.status, busy.ok) == (503, False)
