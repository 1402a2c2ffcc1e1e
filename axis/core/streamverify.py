"""Verify a big signed edXML document with bounded memory: the exclusive-C14N digest is computed while parsing.

The inline path (:class:`axis.core.verify.Verifier`) parses a document into one lxml tree and canonicalizes it
whole: fine for a few MB, ~4 times the document in memory. A document over ``limits.inline_max_bytes`` travels by
reference (:mod:`axis.core.blobref`) and is verified here from chunks of bytes (a file, read piece by piece):

- expat parses in SAX mode (no tree; character data in pieces of at most 1 MB) with the rules of
  :mod:`axis.core.xmlsafe`: any ``<!DOCTYPE`` refused before the parser sees it (so no DTD, no entity but the
  predefined ones, no network), comments dropped, CDATA merged into the text, a processing instruction inside
  the root element XML_FORBIDDEN. Expat, not libxml2: lxml's SAX interface reports an element's namespace but
  not the prefix it was written with, which exclusive C14N outputs (the real samples bind both the default
  namespace and ``edXML:`` to the edXML namespace);
- every event is written, as it comes, in exclusive C14N 1.0 without comments (:class:`_Canon`) into the digest of
  the Reference (the enveloped-signature transform leaves the ``ds:Signature`` element out) and, for the
  ``ds:SignedInfo``, into a small buffer whose signature is checked with the signer's key;
- a *small tree* of the document is built at the same time for everything else (the profile's structure checks
  of :func:`axis.core.verify.locate`, the schema, the model, the signer check): it is the whole document except
  the text of the attachments' ``ContentTransferEncoded`` elements, which is checked as base64 on the fly and left
  out (an empty text in the small tree). Any other text value over :data:`MAX_TEXT` and a small tree over
  :data:`MAX_TREE_BYTES` are refused TOO_LARGE: a document is big because of its attachments.

The checks and their order are those of :meth:`axis.core.verify.Verifier.verify_with_facts`, differential-tested
against it (tests/core/test_streamverify.py) on the real samples, the hostile corpus and mutated envelopes. One
known differences, both refusals: the detail of an XML_MALFORMED refusal (expat's words, not libxml2's), and a
DOCTYPE naming an external DTD in a UTF-16 document is XML_FORBIDDEN here where libxml2 reports XML_MALFORMED (it
tries to load the DTD, no_network stops it). The XML declaration's version must be one libxml2 reads (``1.x``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from cryptography import x509
from lxml import etree

from axis.core.dsig import DIGESTS, DSIG, EDXML
from axis.core.reasons import Reason, Refusal
from axis.core.verify import (
    CertFacts,
    Verifier,
    check_key_strength,
    check_signature_value,
    check_signer,
    check_time_revocation_usage,
    load_chain,
    locate,
)

XML_NS = "http://www.w3.org/XML/1998/namespace"
#: the one element whose text may be big (an attachment's base64 content): checked on the fly, left out of the tree
BIG_TEXT_TAG = f"{{{EDXML}}}ContentTransferEncoded"
#: any other text value (an element's text, or the text between two elements) may be at most this long
#: (8 MiB: a value the inline path also reads — libxml2 refuses a text node over 10 MB without huge_tree)
MAX_TEXT = 8 * 1024 * 1024
#: the small tree (everything but the attachments' content) may hold at most about this many bytes
MAX_TREE_BYTES = 32 * 1024 * 1024
#: the canonical output is kept until the DigestMethod is known (it comes early, in the header), at most this much
_PENDING_BYTES = 4 * 1024 * 1024
_SIGNATURE, _SIGNED_INFO = f"{{{DSIG}}}Signature", f"{{{DSIG}}}SignedInfo"
_REFERENCE, _DIGEST_METHOD = f"{{{DSIG}}}Reference", f"{{{DSIG}}}DigestMethod"
_VERSION = re.compile(r"1\.[0-9]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WS = b" \t\r\n"
_DOCTYPE = b"<!DOCTYPE"
_HASHLIB = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
@dataclass(frozen=True)
class StreamVerified:
    """A big document whose signature, certificate and signer checked out. ``root`` is the small tree (the
    attachments' content left out: read the model with ``attachments`` off or ignore their data); ``sha256`` and
    ``size`` are those of the exact bytes read."""

    root: etree._Element
    signer: str | None
    certificate: x509.Certificate | None
    sha256: str
    size: int


def _text_escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xD;")
    return text


def _attr_escape(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace("\t", "&#x9;")
            .replace("\n", "&#xA;").replace("\r", "&#xD;"))


def _split(clark: str) -> tuple[str, str]:
    if clark.startswith("{"):
        uri, _, local = clark[1:].partition("}")
        return uri, local
    return "", clark


class _Canon:
    """Exclusive C14N 1.0 without comments, written from parse events (no InclusiveNamespaces: the profile has
    none). ``rendered`` holds, per output element, the namespace declarations in effect in the output."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.rendered: list[dict[str, str]] = [{}]
        self.names: list[str] = []

    def start(self, prefix: str, uri: str, local: str, attrs: list[tuple[str, str, str, str]]) -> None:
        """The element ``prefix:local`` in namespace ``uri``; ``attrs``: (namespace URI, local name, prefix, value)
        each. The namespaces it visibly uses are declared unless the output already has them in effect."""
        outer = self.rendered[-1]
        used = {prefix: uri}
        used.update((p, u) for u, _, p, _ in attrs if p)
        decls: list[tuple[str, str]] = []
        for p, u in used.items():
            if p != "xml" and outer.get(p, "") != u:
                decls.append((p, u))
        if decls:
            mine = dict(outer)
            mine.update(decls)
        else:
            mine = outer
        self.rendered.append(mine)
        name = f"{prefix}:{local}" if prefix else local
        self.names.append(name)
        parts = ["<", name]
        for p, uri in sorted(decls):
            parts.append(f' xmlns:{p}="{_attr_escape(uri)}"' if p else f' xmlns="{_attr_escape(uri)}"')
        for _uri, attr_local, p, value in sorted(attrs, key=lambda a: (a[0], a[1])):
            parts.append(f' {p + ":" if p else ""}{attr_local}="{_attr_escape(value)}"')
        parts.append(">")
        self.write("".join(parts).encode())

    def end(self) -> None:
        self.rendered.pop()
        self.write(f"</{self.names.pop()}>".encode())

    def text(self, text: str) -> None:
        self.write(_text_escape(text).encode())


class _Digest:
    """The Reference's digest of the canonical document: the output is kept until the DigestMethod is known (or
    :data:`_PENDING_BYTES`, then every allowed digest is computed)."""

    def __init__(self) -> None:
        self.pending: list[bytes] | None = []
        self.pending_size = 0
        self.hashers: dict[str, Any] = {}

    def choose(self, algorithms: Iterable[str]) -> None:
        if self.pending is None:
            return
        self.hashers = {a: _HASHLIB[a]() for a in algorithms}
        for piece in self.pending:
            for h in self.hashers.values():
                h.update(piece)
        self.pending = None

    def write(self, piece: bytes) -> None:
        if self.pending is None:
            for h in self.hashers.values():
                h.update(piece)
            return
        self.pending.append(piece)
        self.pending_size += len(piece)
        if self.pending_size > _PENDING_BYTES:
            self.choose(_HASHLIB)

    def digest(self, algorithm: str) -> bytes | None:
        if self.pending is not None:
            self.choose([algorithm])
        h = self.hashers.get(algorithm)
        return h.digest() if h is not None else None


class _Base64Check:
    """A base64 text checked as it streams: alphabet, padding only at the end, a whole number of quanta."""

    def __init__(self) -> None:
        self.count = 0
        self.padding = 0
        self.bad = False

    def feed(self, text: str) -> None:
        if self.bad:
            return
        try:
            raw = text.encode("ascii").translate(None, _WS)
        except UnicodeEncodeError:
            self.bad = True
            return
        if not raw:
            return
        body = raw.rstrip(b"=")
        pad = len(raw) - len(body)
        if (self.padding and body) or body.translate(None, _B64):
            self.bad = True
            return
        self.padding += pad
        self.count += len(raw)

    @property
    def ok(self) -> bool:
        return not self.bad and self.padding <= 2 and self.count % 4 == 0


class _Target:
    """The SAX target: the canonical writers, the small tree and the checks, fed by libxml2's events."""

    def __init__(self) -> None:
        self.digest = _Digest()
        self.canon = _Canon(self.digest.write)
        self.tree = etree.TreeBuilder()
        self.new_ns: dict[str, str] = {}  # declarations of the element about to start
        self.scopes: list[dict[str, str]] = [{}]  # the namespaces in scope, per open element
        self.relative: list[bool] = [False]  # whether a relative namespace URI is in scope, per open element
        self.tags: list[str] = []
        self.depth = 0
        self.skip_depth = 0  # > 0 while inside the enveloped ds:Signature (left out of the digest)
        self.signed_info: list[bytes] = []
        self.si_canon: _Canon | None = None
        self.si_depth = 0
        self.si_count = 0
        self.digest_methods: list[str] = []
        self.outside: list[tuple[bool, str, str | None]] = []  # processing instructions before/after the root
        self.seen_root = False
        self.relative_in_signed_info = False
        self.relative_in_document = False
        self.big: _Base64Check | None = None
        self.bad_base64 = False
        self.run = 0  # length of the current text value (between two events)
        self.tree_bytes = 0
        self.error: Refusal | None = None  # the first refusal raised from a callback

    def _fail(self, refusal: Refusal) -> None:
        if self.error is None:
            self.error = refusal
        raise refusal

    def namespace(self, prefix: str | None, uri: str | None) -> None:
        self.new_ns[prefix or ""] = uri or ""

    def start(self, name: str, attributes: list[str]) -> None:
        new, self.new_ns = self.new_ns, {}
        uri, local, prefix = _names(name)
        tag = f"{{{uri}}}{local}" if uri else local
        attrs: list[tuple[str, str, str, str]] = []
        values: dict[str, str] = {}
        for i in range(0, len(attributes), 2):
            a_uri, a_local, a_prefix = _names(attributes[i])
            value = attributes[i + 1]
            values[f"{{{a_uri}}}{a_local}" if a_uri else a_local] = value
            attrs.append((a_uri, a_local, a_prefix, value))
        parent = self.tags[-1] if self.tags else ""
        self.seen_root = True
        self.tags.append(tag)
        self.depth += 1
        self.run = 0
        self.tree_bytes += 200 + len(tag) + sum(len(k) + len(v) for k, v in values.items())
        if self.tree_bytes > MAX_TREE_BYTES:
            self._fail(Refusal(Reason.TOO_LARGE, f"more than {MAX_TREE_BYTES} bytes of elements and values besides "
                                                 "the attachments' content"))
        self.tree.start(tag, values, {(p or None): u for p, u in new.items() if u})  # type: ignore[call-arg]
        if self.si_canon is not None:
            self.si_depth += 1
            self.si_canon.start(prefix, uri, local, attrs)
        elif tag == _SIGNED_INFO and parent == _SIGNATURE and self.skip_depth == 1:
            self.si_count += 1
            self.si_depth = 1
            self.si_canon = _Canon(self.signed_info.append)
            self.si_canon.start(prefix, uri, local, attrs)
        if tag == _DIGEST_METHOD and parent == _REFERENCE and self.skip_depth:
            self.digest_methods.append(values.get("Algorithm", ""))
        if new:
            scope = {**self.scopes[-1], **new}
            self.relative.append(any(u and not _SCHEME.match(u) for u in scope.values()))
        else:
            scope = self.scopes[-1]
            self.relative.append(self.relative[-1])
        self.scopes.append(scope)
        if self.relative[-1]:
            # libxml2's C14N refuses an element with a relative namespace URI in scope: the inline path refuses it
            # when it canonicalizes the SignedInfo, or the document; so is it refused here (at the same step)
            if self.si_canon is not None:
                self.relative_in_signed_info = True
            elif not self.skip_depth and tag != _SIGNATURE:
                self.relative_in_document = True
        if self.skip_depth:
            self.skip_depth += 1
        elif tag == _SIGNATURE:
            self.skip_depth = 1
        else:
            self.canon.start(prefix, uri, local, attrs)
        if tag == BIG_TEXT_TAG:
            self.big = _Base64Check()

    def end(self, name: str) -> None:
        tag = self.tags.pop()
        self.scopes.pop()
        self.relative.pop()
        self.depth -= 1
        self.run = 0
        if self.big is not None:
            if not self.big.ok:
                self.bad_base64 = True
            self.big = None
        self.tree.end(tag)
        if self.si_canon is not None:
            self.si_canon.end()
            self.si_depth -= 1
            if self.si_depth == 0:
                self.si_canon = None
        if self.skip_depth:
            self.skip_depth -= 1
            # the end of the enveloped Signature: the digest method is known
            if not self.skip_depth and self.digest_methods and self.digest.pending is not None:
                allowed = [DIGESTS[m] for m in self.digest_methods if m in DIGESTS]
                self.digest.choose(allowed[:1])
        else:
            self.canon.end()

    def data(self, text: str) -> None:
        if not self.depth:
            return  # whitespace outside the root element: not in the canonical form
        if self.big is not None and self.tags[-1] == BIG_TEXT_TAG:
            self.big.feed(text)
        else:
            self.run += len(text)
            if self.run > MAX_TEXT:
                self._fail(Refusal(Reason.TOO_LARGE, f"a text value over {MAX_TEXT} characters outside an "
                                                     "attachment's content"))
            self.tree_bytes += len(text)
            self.tree.data(text)
        if self.si_canon is not None:
            self.si_canon.text(text)
        if not self.skip_depth:
            self.canon.text(text)

    def declaration(self, version: str | None, encoding: str | None, standalone: int) -> None:
        """The XML declaration: a version libxml2 (the inline path) reads, "1." and digits."""
        if version is not None and not _VERSION.fullmatch(version):
            self._fail(Refusal(Reason.XML_MALFORMED, f"line 1: Unsupported version '{version}'"))

    def doctype(self, *_: Any) -> None:
        self._fail(Refusal(Reason.XML_FORBIDDEN, "a DOCTYPE / DTD is not allowed"))

    def pi(self, target: str, data: str | None) -> None:
        if self.depth:
            self._fail(Refusal(Reason.XML_FORBIDDEN, f"a processing instruction (<?{target} ...?>) inside the "
                                                     "document is not allowed"))
        self.outside.append((self.seen_root, target, data))

    def close(self) -> etree._Element:
        root: etree._Element = self.tree.close()
        for after, target, data in self.outside:  # as the inline tree has them: locate() refuses them
            pi = etree.ProcessingInstruction(target, data)
            if after:
                root.addnext(pi)
            else:
                root.addprevious(pi)
        return root


def _names(name: str) -> tuple[str, str, str]:
    """(namespace URI, local name, prefix) of an expat name (``uri SEP local [SEP prefix]``)."""
    parts = name.split(_SEP)
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return parts[0], parts[1], ""
    return parts[0], parts[1], parts[2]


_RELATIVE = "the document cannot be canonicalized; relative namespace URIs are not allowed"
_SEP = "\x01"  # not allowed anywhere in an XML 1.0 document: splits expat's names unambiguously


def _parse(chunks: Iterable[bytes], max_bytes: int) -> tuple[_Target, etree._Element, str, int]:
    target = _Target()
    parser = expat.ParserCreate(namespace_separator=_SEP)
    parser.namespace_prefixes = True
    parser.ordered_attributes = True
    parser.buffer_text = True  # character data in pieces of up to buffer_size, not line by line
    parser.buffer_size = 1024 * 1024
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartNamespaceDeclHandler = target.namespace
    parser.StartElementHandler = target.start
    parser.EndElementHandler = target.end
    parser.CharacterDataHandler = target.data
    parser.ProcessingInstructionHandler = target.pi
    parser.StartDoctypeDeclHandler = target.doctype
    parser.XmlDeclHandler = target.declaration
    raw = hashlib.sha256()
    size = 0
    tail = b""
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise Refusal(Reason.TOO_LARGE, f"more than the limit of {max_bytes} bytes")
            if _DOCTYPE in tail + chunk[:len(_DOCTYPE)] or _DOCTYPE in chunk:
                raise Refusal(Reason.XML_FORBIDDEN, "a DOCTYPE / DTD is not allowed")
            tail = chunk[-(len(_DOCTYPE) - 1):]
            raw.update(chunk)
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise Refusal(Reason.XML_MALFORMED, f"line {exc.lineno}: {expat.ErrorString(exc.code)}") from None
    except (ValueError, LookupError) as exc:  # an encoding expat cannot read
        raise Refusal(Reason.XML_MALFORMED, str(exc)) from None
    if target.error is not None:
        raise target.error
    if size == 0:
        raise Refusal(Reason.XML_MALFORMED, "line 1: Document is empty")
    return target, target.close(), raw.hexdigest(), size


def verify_stream(verifier: Verifier, chunks: Iterable[bytes], *, max_bytes: int
                  ) -> tuple[StreamVerified, CertFacts | None]:
    """Verify the document read from ``chunks`` as :meth:`Verifier.verify_with_facts` would the whole bytes (same
    checks, same order, same reasons), holding only the small tree and one chunk at a time."""
    policy = verifier.policy
    target, root, sha256, size = _parse(chunks, max_bytes)
    located = locate(root, policy)
    if located is None:
        return StreamVerified(root, None, None, sha256, size), None
    facts = verifier._certificate(located.certs_der)
    if isinstance(facts, Refusal) and facts.reason in (Reason.SIGNATURE_PROFILE, Reason.WEAK_ALGORITHM):
        raise facts
    signer = facts.certificate if isinstance(facts, CertFacts) else load_chain(located.certs_der[:1])[0]
    if not isinstance(facts, CertFacts):
        check_key_strength(signer)
    key = facts.public_key if isinstance(facts, CertFacts) else signer.public_key()
    if target.si_count != 1:  # never reached: locate() found exactly one Signature with one SignedInfo
        raise Refusal(Reason.SIGNATURE_PROFILE, "exactly one SignedInfo is allowed")
    if target.relative_in_signed_info:
        raise Refusal(Reason.SIGNATURE_PROFILE, _RELATIVE)
    check_signature_value(key, located.signature_method, b"".join(target.signed_info), located.signature_value)
    if target.relative_in_document:
        raise Refusal(Reason.SIGNATURE_PROFILE, _RELATIVE)
    digest = target.digest.digest(DIGESTS[located.digest_method])
    if digest != located.digest_value:
        raise Refusal(Reason.SIGNATURE_INVALID, "the document does not match its digest: it was altered")
    if isinstance(facts, Refusal):
        raise facts
    check_time_revocation_usage(facts, policy.clock(), verifier.revoked, verifier.crl_fresh_until)
    uid = check_signer(root, facts.uid)
    if target.bad_base64:
        raise Refusal(Reason.XML_MALFORMED, "an attachment's content is not valid base64")
    return StreamVerified(root, uid, facts.certificate, sha256, size), facts


def file_chunks(path: str, chunk: int = 1024 * 1024) -> Iterable[bytes]:
    """The bytes of a file, ``chunk`` at a time (the file is read as it is verified)."""
    with open(path, "rb") as f:
        while piece := f.read(chunk):
            yield piece
