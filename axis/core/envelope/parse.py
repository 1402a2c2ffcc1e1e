"""``parse(data)`` / ``from_element(root)``: edXML bytes or an already-parsed root → the model.

Fast path for the router: direct child iteration against precomputed qualified names, one dict per flat
record, no XPath. Structural problems the model cannot live with raise ``Refusal(SCHEMA_INVALID)``; bad
base64 in an attachment raises ``Refusal(XML_MALFORMED)``. Full structural checking is ``axis.core.schema``.

Values are read as ``el.text``. That is the whole signed value only because every tree comes from the hardened
parser (:mod:`axis.core.xmlsafe`: comments dropped so the text around them is one node, CDATA merged, processing
instructions inside the document refused): ``<OrganId>000.00.00.G23<!-- x -->.1</OrganId>`` reads
"000.00.00.G23.1", as exclusive C14N signs it. Never hand :func:`from_element` a tree from another parser.
"""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from axis.core.envelope.model import (
    NS,
    Attachment,
    Business,
    BusinessDocumentInfo,
    DocumentMessage,
    DocumentType,
    Message,
    Organization,
    OtherInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
)
from axis.core.reasons import Reason, Refusal
from axis.core.xmlsafe import DEFAULT_MAX_BYTES, parse_head_untrusted, parse_untrusted

_P = "{" + NS + "}"


def _q(name: str) -> str:
    return _P + name


ROOT, ENVELOPE, HEADER, BODY, MANIFEST = (
    _q(n) for n in ("edXML", "edXMLEnvelope", "edXMLHeader", "edXMLBody", "edXMLManifest")
)
MESSAGE_HEADER, TRACE_LIST, TRACE, BUSINESS = (
    _q(n) for n in ("MessageHeader", "TraceHeaderList", "TraceHeader", "Bussiness")
)
FROM, TO, STATUS_CODE = _q("From"), _q("To"), _q("StatusCode")
ATTACHMENT_ENCODED, ATTACHMENT, REFERENCE = _q("AttachmentEncoded"), _q("Attachment"), _q("Reference")

_ORG_FIELDS = tuple(
    (f, _q(t))
    for f, t in (
        ("organization_in_charge", "OrganizationInCharge"),
        ("organ_name", "OrganName"),
        ("organ_add", "OrganAdd"),
        ("email", "Email"),
        ("telephone", "Telephone"),
        ("fax", "Fax"),
        ("website", "Website"),
    )
)
_Q = {
    n: _q(n)
    for n in """
    OrganId DocumentId Code CodeNumber CodeNotation PromulgationInfo Place PromulgationDate DocumentType Type
    TypeDetail TypeName Subject Content SignerInfo Competence Position FullName DueDate OtherInfo Priority
    SphereOfPromulgation TyperNotation PromulgationAmount PageAmount Direction Appendixes Appendix
    SteeringType ToPlaces ResponseFor ApplicationType Timestamp BussinessDocType BussinessDocReason Paper
    ReplacementInfoList ReplacementInfo OrganIdList BussinessDocumentInfo DocumentInfo DocumentReceiver
    ReceiverList Receiver ReceiverType StaffInfo Department Staff Email Mobile Description ContentId
    ContentType AttachmentName ContentTransferEncoded
""".split()  # noqa: SIM905
}
_WS = b" \t\r\n"
_ORGAN_ID = _Q["OrganId"]
_ORG_Q = tuple(q for _, q in _ORG_FIELDS)


def _bad(detail: str) -> Refusal:
    return Refusal(Reason.SCHEMA_INVALID, detail)


def _children(el: etree._Element) -> dict[str, etree._Element]:
    """Direct children by tag (the first of each tag wins); comments and PIs are skipped."""
    out: dict[str, etree._Element] = {}
    for c in el:
        t = c.tag
        if isinstance(t, str) and t not in out:
            out[t] = c
    return out


def _texts(el: etree._Element) -> dict[str, str | None]:
    """Direct children's text by tag (for flat records; values may be None, read them with ``or ""``)."""
    return {t: c.text for c in el if isinstance(t := c.tag, str)}


def _text_list(el: etree._Element, tag: str) -> tuple[str, ...]:
    return tuple(c.text or "" for c in el if c.tag == tag)


def _organization(el: etree._Element, where: str) -> Organization:
    t = _texts(el)
    g = t.get
    organ_id = g(_ORGAN_ID) or ""
    if not organ_id:
        raise _bad(f"line {el.sourceline}: {where} has no OrganId")
    return Organization(
        organ_id,
        g(_ORG_Q[0]) or "",
        g(_ORG_Q[1]) or "",
        g(_ORG_Q[2]) or "",
        g(_ORG_Q[3]) or "",
        g(_ORG_Q[4]) or "",
        g(_ORG_Q[5]) or "",
        g(_ORG_Q[6]) or "",
    )


def _staff(el: etree._Element | None) -> StaffInfo:
    if el is None:
        return StaffInfo()
    t = _texts(el)
    return StaffInfo(
        (t.get(_Q["Department"]) or ""),
        (t.get(_Q["Staff"]) or ""),
        (t.get(_Q["Email"]) or ""),
        (t.get(_Q["Mobile"]) or ""),
    )


def _response_for(el: etree._Element) -> ResponseFor:
    t = _texts(el)
    return ResponseFor(
        organ_id=(t.get(_Q["OrganId"]) or ""),
        document_id=(t.get(_Q["DocumentId"]) or ""),
        code=(t.get(_Q["Code"]) or ""),
        promulgation_date=(t.get(_Q["PromulgationDate"]) or ""),
    )


def _business(el: etree._Element | None) -> Business:
    if el is None:
        return Business()
    c = _children(el)
    t = {k: v.text or "" for k, v in c.items()}
    raw = t.get(_Q["BussinessDocType"], "0").strip() or "0"
    if raw not in ("0", "1", "2", "3"):
        raise _bad(f"line {el.sourceline}: BussinessDocType {raw!r} is not 0, 1, 2 or 3")
    replacement: tuple[ReplacementInfo, ...] = ()
    rl = c.get(_Q["ReplacementInfoList"])
    if rl is not None:
        items = []
        for ri in rl:
            if ri.tag != _Q["ReplacementInfo"]:
                continue
            rc = _children(ri)
            ids_el = rc.get(_Q["OrganIdList"])
            ids = _text_list(ids_el, _Q["OrganId"]) if ids_el is not None else ()
            did = rc.get(_Q["DocumentId"])
            items.append(ReplacementInfo((did.text or "") if did is not None else "", ids))
        replacement = tuple(items)
    info = None
    di = c.get(_Q["BussinessDocumentInfo"])
    if di is not None:
        dc = _children(di)
        receivers: tuple[Receiver, ...] = ()
        rl2 = dc.get(_Q["ReceiverList"])
        if rl2 is not None:
            recs = []
            for r in rl2:
                if r.tag == _Q["Receiver"]:
                    rt = _texts(r)
                    recs.append(Receiver((rt.get(_Q["OrganId"]) or ""), (rt.get(_Q["ReceiverType"]) or "")))
            receivers = tuple(recs)
        d_info = dc.get(_Q["DocumentInfo"])
        d_recv = dc.get(_Q["DocumentReceiver"])
        info = BusinessDocumentInfo(
            (d_info.text or "") if d_info is not None else "",
            (d_recv.text or "") if d_recv is not None else "",
            receivers,
        )
    return Business(
        doc_type=int(raw),
        document_id=(t.get(_Q["DocumentId"]) or ""),
        reason=(t.get(_Q["BussinessDocReason"]) or ""),
        paper=(t.get(_Q["Paper"]) or ""),
        replacement_info=replacement,
        document_info=info,
        staff_info=_staff(c.get(_Q["StaffInfo"])),
    )


def _decode(text: str, content_id: str, line: int | None) -> bytes:
    try:
        raw = text.encode("ascii").translate(None, _WS)
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise Refusal(Reason.XML_MALFORMED, f"line {line}: attachment {content_id} is not valid base64") from None


def _attachments(root: etree._Element, envelope_children: dict[str, etree._Element]) -> tuple[Attachment, ...]:
    refs: dict[str, dict[str, str | None]] = {}
    body = envelope_children.get(BODY)
    manifest = _children(body).get(MANIFEST) if body is not None else None
    if manifest is not None:
        for r in manifest:
            if r.tag != REFERENCE:
                continue
            t = _texts(r)
            cid = t.get(_Q["ContentId"]) or ""
            if not cid:
                raise _bad(f"line {r.sourceline}: manifest Reference has no ContentId")
            if cid in refs:
                raise _bad(f"line {r.sourceline}: manifest lists ContentId {cid} twice")
            refs[cid] = t
    out: list[Attachment] = []
    seen: set[str] = set()
    for enc in root:
        if enc.tag != ATTACHMENT_ENCODED:
            continue
        for a in enc:
            if a.tag != ATTACHMENT:
                continue
            t = _texts(a)
            cid = t.get(_Q["ContentId"]) or ""
            if not cid:
                raise _bad(f"line {a.sourceline}: Attachment has no ContentId")
            if cid in seen:
                raise _bad(f"line {a.sourceline}: attachment ContentId {cid} appears twice")
            ref = refs.get(cid)
            if ref is None:
                raise _bad(f"line {a.sourceline}: attachment {cid} is not listed in the manifest")
            seen.add(cid)
            if _Q["ContentTransferEncoded"] not in t:
                raise _bad(f"line {a.sourceline}: attachment {cid} has no ContentTransferEncoded")
            out.append(
                Attachment(
                    content_id=cid,
                    name=t.get(_Q["AttachmentName"]) or (ref.get(_Q["AttachmentName"]) or ""),
                    data=_decode(t[_Q["ContentTransferEncoded"]] or "", cid, a.sourceline),
                    content_type=t.get(_Q["ContentType"]) or (ref.get(_Q["ContentType"]) or ""),
                    description=t.get(_Q["Description"]) or (ref.get(_Q["Description"]) or ""),
                )
            )
    missing = [cid for cid in refs if cid not in seen]
    if missing:
        raise _bad(f"manifest lists {', '.join(missing)} but no such attachment is present")
    return tuple(out)


def _document(root: etree._Element | None, env: dict[str, etree._Element], header: dict[str, etree._Element],
              mh: etree._Element, attachments: bool = True) -> DocumentMessage:
    """``root`` may be None only with ``attachments=False`` (:func:`document_head`: the MessageHeader alone)."""
    sender: Organization | None = None
    recipients: list[Organization] = []
    c: dict[str, etree._Element] = {}
    for el in mh:
        tag = el.tag
        if tag == TO:
            recipients.append(_organization(el, "To"))
        elif tag == FROM:
            if sender is None:
                sender = _organization(el, "From")
        elif isinstance(tag, str) and tag not in c:
            c[tag] = el
    if sender is None:
        raise _bad(f"line {mh.sourceline}: MessageHeader has no From")
    if not recipients:
        raise _bad(f"line {mh.sourceline}: MessageHeader has no To")
    doc_id_el = c.get(_Q["DocumentId"])
    document_id = (doc_id_el.text or "") if doc_id_el is not None else ""
    if not document_id.strip():
        raise _bad(f"line {mh.sourceline}: MessageHeader has no DocumentId")

    def text(name: str) -> str:
        e = c.get(_Q[name])
        return (e.text or "") if e is not None else ""

    def rec(name: str) -> dict[str, str | None]:
        e = c.get(_Q[name])
        return _texts(e) if e is not None else {}

    code, prom, dt, si = rec("Code"), rec("PromulgationInfo"), rec("DocumentType"), rec("SignerInfo")
    other = OtherInfo()
    oi_el = c.get(_Q["OtherInfo"])
    if oi_el is not None:
        oc = _children(oi_el)
        ot = {k: v.text or "" for k, v in oc.items()}
        app = oc.get(_Q["Appendixes"])
        other = OtherInfo(
            (ot.get(_Q["Priority"]) or ""),
            (ot.get(_Q["SphereOfPromulgation"]) or ""),
            (ot.get(_Q["TyperNotation"]) or ""),
            (ot.get(_Q["PromulgationAmount"]) or ""),
            (ot.get(_Q["PageAmount"]) or ""),
            (ot.get(_Q["Direction"]) or ""),
            _text_list(app, _Q["Appendix"]) if app is not None else (),
        )
    places = c.get(_Q["ToPlaces"])
    rf = c.get(_Q["ResponseFor"])

    traces: list[TraceHeader] = []
    business_el: etree._Element | None = None
    tl = header.get(TRACE_LIST)
    if tl is not None:
        for el in tl:
            if el.tag == TRACE:
                t = _texts(el)
                traces.append(TraceHeader((t.get(_Q["OrganId"]) or ""), (t.get(_Q["Timestamp"]) or "")))
            elif el.tag == BUSINESS and business_el is None:
                business_el = el

    return DocumentMessage(
        sender=sender,
        recipients=tuple(recipients),
        document_id=document_id,
        subject=text("Subject"),
        content=text("Content"),
        code_number=(code.get(_Q["CodeNumber"]) or ""),
        code_notation=(code.get(_Q["CodeNotation"]) or ""),
        promulgation_place=(prom.get(_Q["Place"]) or ""),
        promulgation_date=(prom.get(_Q["PromulgationDate"]) or ""),
        document_type=DocumentType(
            (dt.get(_Q["Type"]) or ""), (dt.get(_Q["TypeDetail"]) or ""), (dt.get(_Q["TypeName"]) or "")
        ),
        signer_info=SignerInfo(
            (si.get(_Q["Competence"]) or ""), (si.get(_Q["Position"]) or ""), (si.get(_Q["FullName"]) or "")
        ),
        due_date=text("DueDate"),
        other_info=other,
        steering_type=text("SteeringType"),
        to_places=_text_list(places, _Q["Place"]) if places is not None else (),
        response_for=_response_for(rf) if rf is not None else None,
        application_type=text("ApplicationType"),
        trace_headers=tuple(traces),
        business=_business(business_el),
        attachments=_attachments(root, env) if attachments and root is not None else (),
    )


def _status(mh: etree._Element) -> StatusMessage:
    c = _children(mh)
    frm = c.get(FROM)
    if frm is None:
        raise _bad(f"line {mh.sourceline}: MessageHeader has no From")
    rf = c.get(_Q["ResponseFor"])
    if rf is None:
        raise _bad(f"line {mh.sourceline}: status has no ResponseFor")
    response_for = _response_for(rf)
    if not response_for.organ_id or not response_for.document_id:
        raise _bad(f"line {rf.sourceline}: ResponseFor needs OrganId and DocumentId")

    def text(name: str) -> str:
        e = c.get(_Q[name])
        return (e.text or "") if e is not None else ""

    return StatusMessage(
        sender=_organization(frm, "From"),
        response_for=response_for,
        status_code=c[STATUS_CODE].text or "",
        description=text("Description"),
        timestamp=text("Timestamp"),
        staff_info=_staff(c.get(_Q["StaffInfo"])),
    )


def from_element(root: etree._Element, *, attachments: bool = True) -> Message:
    """The message in an edXML root parsed by :mod:`axis.core.xmlsafe` (as handed over by the verifier; never reparsed).
    ``attachments=False``: a document's attachments are neither read nor checked (``attachments=()``), for a
    caller that needs only the header of bytes already checked in full."""
    if root.tag != ROOT:
        raise _bad(f"line {root.sourceline}: root element is {root.tag!s}, not {{{NS}}}edXML")
    env_el = _children(root).get(ENVELOPE)
    if env_el is None:
        raise _bad(f"line {root.sourceline}: no edXMLEnvelope")
    env = _children(env_el)
    header_el = env.get(HEADER)
    if header_el is None:
        raise _bad(f"line {env_el.sourceline}: no edXMLHeader")
    header = _children(header_el)
    mh = header.get(MESSAGE_HEADER)
    if mh is None:
        raise _bad(f"line {header_el.sourceline}: no MessageHeader")
    if next(mh.iterchildren(STATUS_CODE), None) is not None:  # a tag match in C: no Python object per child
        return _status(mh)
    return _document(root, env, header, mh, attachments)


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Parse untrusted edXML bytes (through :func:`axis.core.xmlsafe.parse_untrusted`) into the model."""
    return from_element(parse_untrusted(data, max_bytes=max_bytes))


def document_head(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> DocumentMessage:
    """The MessageHeader fields of a document (sender, recipients, DocumentId, Code, PromulgationInfo, …; no
    trace headers, business info or attachments), parsed only up to the end of its MessageHeader: what a status
    about a stored document needs, without reading the attachments that make up most of its bytes."""
    mh = parse_head_untrusted(data, MESSAGE_HEADER, max_bytes=max_bytes)
    if mh is None:
        raise _bad("no MessageHeader")
    if any(el.tag == STATUS_CODE for el in mh):
        raise _bad(f"line {mh.sourceline}: a status message, not a document")
    return _document(None, {}, {}, mh, attachments=False)
