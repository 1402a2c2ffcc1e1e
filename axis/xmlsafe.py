"""The one hardened XML parser for untrusted input.

No DTD, no entity declarations, no network, no huge trees, and a size limit checked before parsing.
Every piece of axis that reads bytes from outside goes through :func:`parse_untrusted`.
"""

from __future__ import annotations

from lxml import etree

from axis.reasons import Reason, Refusal

#: Default size limit for one envelope (bytes). Configurable per call; the HTTP layer enforces it on the body.
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

_DOCTYPE = b"<!DOCTYPE"

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=False,
    remove_pis=False,
    collect_ids=False,
)


def parse_untrusted(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise :class:`Refusal`.

    - TOO_LARGE: more than ``max_bytes``.
    - XML_FORBIDDEN: a DOCTYPE (and so any DTD, entity declaration or external reference).
    - XML_MALFORMED: not well-formed, wrong encoding, or not bytes; the detail names the line.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Refusal(Reason.XML_MALFORMED, "input is not bytes")
    if len(data) > max_bytes:
        raise Refusal(Reason.TOO_LARGE, f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    data = bytes(data)
    if _DOCTYPE in data:
        # Refused before lxml sees it: no DTD, internal or external, is ever looked at.
        raise Refusal(Reason.XML_FORBIDDEN, "a DOCTYPE / DTD is not allowed")
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
