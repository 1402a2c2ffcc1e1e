"""The one hardened XML parser for untrusted input.

No DTD, no entity declarations, no network, no huge trees, and a size limit checked before parsing.
Every piece of axis that reads bytes from outside goes through :func:`parse_untrusted` (or, to read only the
beginning of a document, :func:`parse_head_untrusted`: same checks, same parser settings).

What the axis reads is what was signed. The signing profile canonicalizes with exclusive C14N *without
comments*, so ``<OrganId>000.00.00.G23<!-- x -->.1</OrganId>`` is signed as "000.00.00.G23.1"; an lxml tree that
kept the comment would give ``el.text == "000.00.00.G23"`` (the text node before the comment), the class of bugs
behind CVE-2017-11427/11428/11429 (SAML). So the tree every reader gets is the signed view of the document:

- comments are dropped while parsing (``remove_comments``): libxml2 then merges the text around them into one
  text node, exactly the text C14N signs. Nothing in the axis needs comments; the canonical forms, and so digests
  and signatures, are the same with or without them.
- CDATA sections are merged into the text (``strip_cdata``, lxml's default, pinned here): C14N signs their
  content as text too.
- a processing instruction inside the root element is refused, ``XML_FORBIDDEN``. Unlike a comment, a PI is
  part of the C14N output (it is signed), so dropping it would make the axis read a value other than the signed
  one, and keeping it would split the value (``el.text`` stops at it). No edXML document needs one, and XSD
  validation ignores PIs, so it cannot be SCHEMA_INVALID: like a DTD it is a construct of the XML itself that
  the hardened parser does not accept, before any reader (verifier, router, endpoints, CLI, signer) sees the
  tree. PIs *outside* the root (``<?xml-stylesheet?>`` in the prolog) split no value and stay the verifier's
  business (SIGNATURE_PROFILE for a signed document: they are outside what the signature covers).
"""

from __future__ import annotations

from typing import TypedDict

from lxml import etree

from axis.core.reasons import Reason, Refusal

#: Default size limit for one envelope (bytes). Configurable per call; the HTTP layer enforces it on the body.
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

_DOCTYPE = b"<!DOCTYPE"


class _ParserOptions(TypedDict):
    """The parser settings both parsers take (a TypedDict, so each keyword is checked against lxml's)."""

    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool
    strip_cdata: bool
    collect_ids: bool


_OPTIONS: _ParserOptions = {"resolve_entities": False, "no_network": True, "load_dtd": False,
                            "dtd_validation": False, "huge_tree": False, "remove_comments": True,
                            "remove_pis": False, "strip_cdata": True, "collect_ids": False}
_PARSER: etree.XMLParser[etree._Element] = etree.XMLParser(**_OPTIONS)


def parse_untrusted(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise :class:`Refusal`.

    - TOO_LARGE: more than ``max_bytes``.
    - XML_FORBIDDEN: a DOCTYPE (and so any DTD, entity declaration or external reference); a processing
      instruction inside the root element.
    - XML_MALFORMED: not well-formed, wrong encoding, or not bytes; the detail names the line.

    The tree has no comments and no CDATA nodes: each element's text is the text exclusive C14N signs.
    """
    data = _admit(data, max_bytes)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if getattr(exc, "lineno", None) else exc.position[0]
        raise Refusal(Reason.XML_MALFORMED, f"line {line}: {exc.msg}") from None
    except ValueError as exc:  # e.g. unicode strings with encoding declarations
        raise Refusal(Reason.XML_MALFORMED, str(exc)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Refusal(Reason.XML_FORBIDDEN, "a DOCTYPE / DTD is not allowed")
    _refuse_pis(root)
    return root


def _refuse_pis(root: etree._Element) -> None:
    """XML_FORBIDDEN for a processing instruction anywhere inside ``root`` (see the module docstring)."""
    for pi in root.iter(etree.ProcessingInstruction):
        if isinstance(pi, etree._ProcessingInstruction):  # always, by the selector (narrows the type to a PI)
            raise Refusal(Reason.XML_FORBIDDEN, f"line {pi.sourceline}: a processing instruction "
                          f"(<?{pi.target} ...?>) inside the document is not allowed")


def _admit(data: bytes, max_bytes: int) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Refusal(Reason.XML_MALFORMED, "input is not bytes")
    if len(data) > max_bytes:
        raise Refusal(Reason.TOO_LARGE, f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    data = bytes(data)
    if _DOCTYPE in data:
        # Refused before lxml sees it: no DTD, internal or external, is ever looked at.
        raise Refusal(Reason.XML_FORBIDDEN, "a DOCTYPE / DTD is not allowed")
    return data


def parse_head_untrusted(data: bytes, tag: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                         chunk: int = 8192) -> etree._Element | None:
    """The first complete ``tag`` element (Clark notation) of the bytes, parsed only up to its end: what follows
    (an edXML document's attachments, usually most of its bytes) is never read. The same admission checks and
    parser settings as :func:`parse_untrusted` (no comments, CDATA merged; a processing instruction in what was
    read of the root element is XML_FORBIDDEN); None when the bytes end without one."""
    data = _admit(data, max_bytes)
    parser: etree.XMLPullParser[etree._Element] = etree.XMLPullParser(events=("end",), tag=tag, **_OPTIONS)
    try:
        for start in range(0, len(data), chunk):
            parser.feed(data[start:start + chunk])
            for _, element in parser.read_events():
                _refuse_pis(element.getroottree().getroot())  # everything parsed so far, the element included
                return element
        parser.close()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if getattr(exc, "lineno", None) else exc.position[0]
        raise Refusal(Reason.XML_MALFORMED, f"line {line}: {exc.msg}") from None
    return None
