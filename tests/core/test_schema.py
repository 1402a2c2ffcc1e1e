"""axis.core.schema: built messages validate; structural violations are SCHEMA_INVALID with a line number."""

from __future__ import annotations

import re
import threading

import pytest

from axis.core import envelope as env
from axis.core import schema
from axis.core.envelope import Attachment, ResponseFor
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import parse_untrusted

DS = "http://www.w3.org/2000/09/xmldsig#"


def _doc(**kw) -> bytes:
    return env.build(
        env.new_document(
            "000.00.00.G22",
            ["000.00.00.H41", "H55.242"],
            "V/v thử",
            attachments=[Attachment("cid:1", "a.txt", b"hello", "text/plain")],
            **kw,
        )
    )


def _status(code: str = "03") -> bytes:
    return env.build(env.new_status("000.00.00.H41", ResponseFor("000.00.00.G22", "D1"), code, "ok"))


def _refused(data: bytes) -> Refusal:
    with pytest.raises(Refusal) as exc:
        schema.validate(parse_untrusted(data))
    assert exc.value.reason is Reason.SCHEMA_INVALID
    assert re.match(r"line \d+: ", exc.value.detail), exc.value.detail
    return exc.value


@pytest.mark.parametrize("kind", ["edoc", "revocation", "update", "replacement"])
def test_built_documents_validate(kind: str) -> None:
    related = None if kind == "edoc" else "000.00.00.G22,2024/01/01,1/VP"
    schema.validate(parse_untrusted(_doc(doc_type=kind, related_document_id=related)))


@pytest.mark.parametrize("code", sorted(env.STATUS_CODES))
def test_built_statuses_validate(code: str) -> None:
    schema.validate(parse_untrusted(_status(code)))


def test_schema_is_chosen_by_content() -> None:
    assert schema.schema_for(parse_untrusted(_status())) == schema.STATUS_XSD
    assert schema.schema_for(parse_untrusted(_doc())) == schema.DOCUMENT_XSD


def test_unknown_status_code() -> None:
    assert "StatusCode" in _refused(_status().replace(b">03<", b">07<")).detail


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>4<"),  # business type 0..3
        (b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n", b""),  # From without OrganId
        (b"<edXML:OrganId>000.00.00.H41<", b"<edXML:OrganId>h41 lower<"),  # agency code syntax
        (b"<edXML:DocumentId>000.00.00.G22", b"<edXML:DocumentIdX>000.00.00.G22"),  # no DocumentId
        (b"<ContentId>cid:1</ContentId>", b"<ContentId>cid:2</ContentId>"),  # attachment not in manifest
        (b"<edXML:ContentId>cid:1</edXML:ContentId>", b"<edXML:ContentId>x</edXML:ContentId>"),  # not a cid:
        (b"<edXML:Subject>", b"<edXML:Unknown>x</edXML:Unknown><edXML:Subject>"),  # unexpected element
    ],
)
def test_document_violations(old: bytes, new: bytes) -> None:
    data = _doc()
    assert old in data
    fixed = data.replace(old, new)
    if b"DocumentIdX" in fixed:
        fixed = fixed.replace(b"</edXML:DocumentId>", b"</edXML:DocumentIdX>", 1)
    _refused(fixed)


def test_document_without_recipient() -> None:
    data = _doc()
    start = data.index(b"<edXML:To>")
    end = data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    _refused(data[:start] + data[end:])


def test_manifest_without_attachments() -> None:
    data = _doc()
    start = data.index(b"<AttachmentEncoded>")
    end = data.index(b"</AttachmentEncoded>") + len(b"</AttachmentEncoded>")
    _refused(data[:start] + data[end:])


def _with_signature(data: bytes, sig: bytes) -> bytes:
    return data.replace(b"</edXML:edXMLHeader>", sig + b"</edXML:edXMLHeader>")


def test_signature_slot() -> None:
    dsig = f'<Signature xmlns="{DS}"><SignedInfo/></Signature>'.encode()
    schema.validate(parse_untrusted(_with_signature(_doc(), dsig)))
    schema.validate(parse_untrusted(_with_signature(_status(), dsig)))
    # Misplaced namespace (as in the real samples): accepted here, refused by the verifier (SIGNATURE_PROFILE).
    schema.validate(parse_untrusted(_with_signature(_doc(), b"<edXML:Signature><x/></edXML:Signature>")))
    # A signature anywhere else is a schema violation.
    _refused(_doc().replace(b"<edXML:Subject>", dsig + b"<edXML:Subject>"))


def test_concurrent_validation_reports_correct_errors() -> None:
    good = parse_untrusted(_doc())
    bad = parse_untrusted(_status().replace(b">03<", b">07<"))
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(30):
            if i % 2:
                schema.validate(good)
            else:
                try:
                    schema.validate(bad)
                    errors.append("accepted a bad document")
                except Refusal as r:
                    if "StatusCode" not in r.detail:
                        errors.append(r.detail)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
