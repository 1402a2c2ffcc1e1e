"""The real edXML samples (../shared/edxml-samples, read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from axis.core import envelope as env
from axis.core import schema
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import parse_untrusted

WELL_FORMED = {
    "edoc_new.edxml": "edoc",
    "edoc_revocation.edxml": "revocation",
    "edoc_update.edxml": "update",
    "edoc_replacement.edxml": "replacement",
    "dc0bdef0-c7a3-4aaf-b717-777303442973.edxml": "edoc",
    "status.edxml": "status",
    "status_inbox_01.edxml": "status",
    "status_rejection_02.edxml": "status",
    "status_acceptance_03.edxml": "status",
    "status_assignment_04.edxml": "status",
    "status_processing_05.edxml": "status",
    "status_finish_06.edxml": "status",
    "status_cancellation_13.edxml": "status",
    "status_change-acceptance_15.edxml": "status",
    "status_change-rejection_16.edxml": "status",
}


def test_every_sample_is_covered(samples_dir: Path) -> None:
    names = {p.name for p in samples_dir.glob("*.edxml")}
    assert names == set(WELL_FORMED) | {"edoc.edxml"}


@pytest.mark.parametrize(("name", "kind"), sorted(WELL_FORMED.items()))
def test_sample_parses_and_validates(samples_dir: Path, name: str, kind: str) -> None:
    data = (samples_dir / name).read_bytes()
    root = parse_untrusted(data)
    schema.validate(root)
    msg = env.from_element(root)
    assert env.message_kind(msg) == kind
    assert env.parse(data) == msg
    # Rebuilding the model gives a document that validates and parses back to the same model.
    rebuilt = env.build(msg)
    schema.validate(parse_untrusted(rebuilt))
    assert env.parse(rebuilt) == msg


def test_status_sample_fields(samples_dir: Path) -> None:
    msg = env.parse((samples_dir / "status_finish_06.edxml").read_bytes())
    assert isinstance(msg, env.StatusMessage)
    assert msg.sender.organ_id == "000.00.00.H41"
    assert msg.status_code == "06"
    assert msg.response_for.organ_id == "000.00.00.G22"
    assert msg.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert msg.timestamp == "2015/09/20 11:08:36"
    assert msg.staff_info.mobile == "84912000001"


def test_document_sample_fields(samples_dir: Path) -> None:
    msg = env.parse((samples_dir / "edoc_new.edxml").read_bytes())
    assert isinstance(msg, env.DocumentMessage)
    assert msg.sender.organ_id == "000.00.00.A80"
    assert [r.organ_id for r in msg.recipients] == ["28.22.H17"]
    assert msg.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert msg.subject == "V/v kết nối, liên thông phần mềm quản lý văn bản"
    assert msg.document_type.type_name == "Công văn"
    assert msg.other_info.appendixes == ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)
    assert msg.to_places == ("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP")
    (att,) = msg.attachments
    assert att.content_id == "cid:209" and att.content_type == "application/zip"
    assert att.data[:2] == b"PK"  # the samples zip the file before base64


def test_replacement_and_update_details(samples_dir: Path) -> None:
    rep = env.parse((samples_dir / "edoc_replacement.edxml").read_bytes())
    assert rep.business.doc_type == 3
    assert rep.business.replacement_info[0].organ_ids == ("000.00.00.H41", "000.00.00.H14")
    upd = env.parse((samples_dir / "edoc_update.edxml").read_bytes())
    assert upd.business.document_info is not None
    assert [r.organ_id for r in upd.business.document_info.receivers] == ["000.00.00.H41", "000.00.00.H14"]
    rev = env.parse((samples_dir / "edoc_revocation.edxml").read_bytes())
    assert rev.response_for is not None and rev.response_for.document_id.startswith("000.00.04.G14")
    dc = env.parse((samples_dir / "dc0bdef0-c7a3-4aaf-b717-777303442973.edxml").read_bytes())
    assert len(dc.recipients) == 3 and dc.trace_headers[0].organ_id == "000.00.00.G22"


def test_edoc_is_not_well_formed(samples_dir: Path) -> None:
    with pytest.raises(Refusal) as exc:
        env.parse((samples_dir / "edoc.edxml").read_bytes())
    assert exc.value.reason is Reason.XML_MALFORMED
    assert exc.value.detail.startswith("line 74:")
