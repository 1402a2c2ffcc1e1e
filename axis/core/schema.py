"""XML Schema validation of edXML against ``schemas/*.xsd`` (document and status messages).

The schema is chosen by content: a MessageHeader with a StatusCode is a status message, anything else a
document message. Each schema is compiled once per process. Validation itself is thread-safe: lxml makes a
fresh libxml2 validation context per call over the read-only compiled schema; only the error log on the
XMLSchema object is shared, so the happy path uses a lock-free instance and, on failure, the document is
validated again under a lock with a second instance kept only for reading error messages.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from lxml import etree

from axis.core.dsig import e
from axis.core.reasons import Reason, Refusal

#: Where the XSD files live: repository root ``schemas/``, linked into the package as ``axis/schemas``.
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
DOCUMENT_XSD = "edxml-document.xsd"
STATUS_XSD = "edxml-status.xsd"

_lock = threading.Lock()


def _compile(name: str) -> etree.XMLSchema:
    path = SCHEMA_DIR / name
    # Trusted input (our own files), but still: no network, no entities.
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


@cache
def _fast(name: str) -> etree.XMLSchema:
    """The instance every validation uses, compiled once."""
    return _compile(name)


@cache
def _reporting(name: str) -> etree.XMLSchema:
    """The instance that reads error messages (under the lock), compiled on the first invalid document or by
    :func:`preload`: a process that sees only valid documents (``axis envelope verify`` over a good directory)
    never compiles it."""
    return _compile(name)


_ENVELOPE, _HEADER, _MESSAGE_HEADER, _STATUS_CODE = (e(n) for n in ("edXMLEnvelope", "edXMLHeader", "MessageHeader",
                                                                     "StatusCode"))


def _first(el: etree._Element, tag: str) -> etree._Element | None:
    """The first child ``tag`` (lxml matches the tag in C: the other children never become Python objects)."""
    return next(el.iterchildren(tag), None)


def is_status(root: etree._Element) -> bool:
    """True when the root's MessageHeader carries a StatusCode (a status message); also
    ``axis.core.envelope.is_status``. It lives here so that validating does not import the envelope model
    (``axis envelope verify`` never builds one)."""
    env = _first(root, _ENVELOPE)
    header = _first(env, _HEADER) if env is not None else None
    mh = _first(header, _MESSAGE_HEADER) if header is not None else None
    return mh is not None and _first(mh, _STATUS_CODE) is not None


def schema_for(root: etree._Element) -> str:
    """The XSD file name that applies to this root."""
    return STATUS_XSD if is_status(root) else DOCUMENT_XSD


def validate(root: etree._Element) -> None:
    """Validate an edXML root element; raise ``Refusal(SCHEMA_INVALID, "line N: message")`` on the first error."""
    name = schema_for(root)
    if _fast(name).validate(root):
        return
    reporting = _reporting(name)
    with _lock:
        if reporting.validate(root):  # pragma: no cover - only if the tree changed under us
            return
        errors = list(reporting.error_log)
    if not errors:  # pragma: no cover
        raise Refusal(Reason.SCHEMA_INVALID, "document does not match the edXML schema")
    first = errors[0]
    raise Refusal(Reason.SCHEMA_INVALID, f"line {first.line}: {first.message}")


def preload() -> None:
    """Compile both schemas now, both instances (servers call this at start-up so the first request is not slow)."""
    for name in (DOCUMENT_XSD, STATUS_XSD):
        _fast(name)
        _reporting(name)
