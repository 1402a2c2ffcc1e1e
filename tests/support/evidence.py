"""Evidence-log test helpers: a document's events, a log in memory with signed tree heads, bundle surgery."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from axis.core import merkle
from axis.core import pki as pkimod
from axis.core.envelope import parse
from axis.core.evidence import Event, SignedTreeHead, inclusion_json, sign_sth
from axis.core.evidence_bundle import M_MANIFEST, build_bundle

HOUR_MS = 3_600_000


def document_events(envelope: bytes, at: int, recipient: str, *, doc_type: int = 1) -> list[Event]:
    """submitted, routed, stored, status 01, acked of ``envelope`` (signed), starting at ``at`` (ms)."""
    msg = parse(envelope)
    sender, doc_id = msg.sender.organ_id, msg.document_id  # type: ignore[union-attr]
    digest = hashlib.sha256(envelope).hexdigest()
    return [
        Event("submitted", at, sender, doc_id, doc_type, digest, server="srv-a"),
        Event("routed", at + 5, sender, doc_id, doc_type, digest),
        Event("stored", at + 40, sender, doc_id, doc_type, digest, agency=recipient),
        Event("status", at + 40, sender, doc_id, doc_type, digest, agency=recipient, code="01"),
        Event("acked", at + 90_000, sender, doc_id, doc_type, "", agency=recipient),
    ]


def noise(n: int, at: int) -> list[Event]:
    """``n`` leaves of other documents."""
    return [Event("submitted", at + i, "000.00.00.X99", f"OTHER-{i}", 1, hashlib.sha256(b"%d" % i).hexdigest())
            for i in range(n)]


class MemoryLog:
    """A log in memory: leaves, their tree, tree heads signed with ``key``/``cert``."""

    def __init__(self, key: pkimod.PrivateKey, cert: bytes) -> None:
        self.key, self.cert = key, cert
        self.leaves: list[bytes] = []
        self.src = merkle.ListSource()

    def append(self, events: Sequence[Event]) -> list[int]:
        out = []
        for e in events:
            out.append(len(self.leaves))
            self.leaves.append(e.leaf())
            self.src.append(merkle.leaf_hash(e.leaf()))
        return out

    def sth(self, timestamp: int) -> SignedTreeHead:
        size = len(self.leaves)
        return sign_sth(size, timestamp, merkle.tree_root(self.src, size), self.key, self.cert)

    def proof(self, index: int, size: int) -> dict[str, Any]:
        return inclusion_json(index, size, self.leaves[index], merkle.inclusion_path(self.src, index, size))

    def bundle(self, envelope: bytes, indices: Sequence[int], sth: SignedTreeHead, ca_pem: bytes,
               crl_pem: bytes | None) -> bytes:
        leaves = [(i, self.leaves[i], self.proof(i, sth.tree_size)) for i in indices]
        return build_bundle(envelope, leaves, sth, ca_pem, crl_pem)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(data: bytes, changes: Mapping[str, bytes | None], *, fix_manifest: bool = True) -> bytes:
    """``data`` with members replaced (None: removed) in their places, the manifest recomputed (an attacker
    rewrites it too: it is not signed) unless ``fix_manifest`` is False."""
    old = members(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        order = [(i.filename, i.compress_type) for i in zf.infolist()]
    new = {**old, **{k: v for k, v in changes.items() if v is not None}}
    for name, value in changes.items():
        if value is None:
            new.pop(name, None)
    if fix_manifest and M_MANIFEST in new:
        manifest = json.loads(new[M_MANIFEST])
        manifest["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in new.items() if n != M_MANIFEST}
        new[M_MANIFEST] = json.dumps(manifest).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        names = [n for n, _ in order if n in new] + [n for n in new if n not in dict(order)]
        kinds = dict(order)
        for name in names:
            zf.writestr(name, new[name], compress_type=kinds.get(name, zipfile.ZIP_DEFLATED))
    return out.getvalue()


def edit_json(data: bytes, name: str, fn: Callable[[Any], Any]) -> bytes:
    """``data`` with the JSON member ``name`` edited by ``fn`` (which returns the new object)."""
    obj = json.loads(members(data)[name])
    return rezip(data, {name: json.dumps(fn(obj)).encode()})


def flip_hex(text: str, at: int = 0) -> str:
    """A hex string with one digit changed."""
    c = text[at]
    return text[:at] + ("0" if c != "0" else "1") + text[at + 1 :]


def flip_b64_byte(text: str, at: int = 0) -> str:
    """Base64 of the same bytes with byte ``at`` flipped."""
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def flip_attachment_byte(envelope: bytes) -> bytes:
    """The envelope with one character of its base64 attachment changed (still well-formed, still base64)."""
    marker = b"ContentTransferEncoded>"
    start = envelope.index(marker) + len(marker) + 10
    c = envelope[start : start + 1]
    return envelope[:start] + (b"A" if c != b"A" else b"B") + envelope[start + 1 :]
