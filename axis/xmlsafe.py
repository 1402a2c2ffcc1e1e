"""The one hardened XML parser for untrusted input.

No DTD, no entity declarations, no network, no huge trees, and a size limit checked before parsing.
Every piece of axis that reads bytes from outside goes through :func:`parse_untrusted` (or, to read only the
beginning of a document, :func:`parse_head_untrusted`: same checks, same parser settings).
"""

from __future__ import annotations

from lxml import etree

from axis.reasons import Reason, Refusal

#: Default size limit for one envelope (bytes). Configurable per call; the HTTP layer enforces it on the body.
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

_DOCTYPE = b"<!DOCTYPE"

_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False, "dtd_validation": False,
            "huge_tree": False, "remove_comments": False, "remove_pis": False, "collect_ids": False}
_PARSER = etree.XMLParser(**_OPTIONS)  # type: ignore[arg-type]


def parse_untrusted(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise :class:`Refusal`.

    - TOO_LARGE: more than ``max_bytes``.
    - XML_FORBIDDEN: a DOCTYPE (and so any DTD, entity declaration or external reference).
    - XML_MALFORMED: not well-formed, wrong encoding, or not bytes; the detail names the line.
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
    return root


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
    parser settings as :func:`parse_untrusted`; None when the bytes end without one."""
    data = _admit(data, max_bytes)
    parser = etree.XMLPullParser(events=("end",), tag=tag, **_OPTIONS)  # type: ignore[call-overload]
    try:
        for start in range(0, len(data), chunk):
            parser.feed(data[start:start + chunk])
            for _, element in parser.read_events():
                return element  # type: ignore[no-any-return]
        parser.close()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if getattr(exc, "lineno", None) else exc.position[0]
        raise Refusal(Reason.XML_MALFORMED, f"line {line}: {exc.msg}") from None
    return None
