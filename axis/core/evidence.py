"""The evidence log's vocabulary (contract section 5): events and their leaf bytes, signed tree heads, proofs.

**Events.** An :class:`Event` is one thing that happened to a document (``EVENT_TYPES``). Its leaf
(:meth:`Event.leaf`) is canonical JSON — UTF-8, keys sorted, separators ``,`` ``:``, no whitespace, integers only,
``"v": 1``, fields that are None omitted. (That is also RFC 8785's form for these values: ASCII keys, strings
escaped as ``json`` does with ``ensure_ascii=False`` — orjson writes exactly those bytes, checked for every code
point in the tests — integers below 2**53.) :func:`event_from_leaf` is the strict
inverse: anything that is not exactly the canonical leaf of a valid event is ``PROOF_INVALID``.

**Idempotency keys.** The log stores an event once per :meth:`Event.key`; a redelivered event (same facts, another
``at``) maps to the same key, so it keeps its first leaf. The key is ``type|sender|document_id|doc_type|…``
followed by what makes one such event distinct:

=============  ===========================================================================================
``submitted``  ``sha256`` (the same id submitted again with other bytes is another event)
``routed``     nothing (a document is routed once)
``stored``     ``agency`` (the recipient whose inbox committed it)
``acked``      ``agency`` (the recipient that took it)
``status``     ``agency`` and ``code`` (who sent which status)
``refused``    ``ref`` — the id of the refused message (each message refused once); without a ``ref``:
               ``sha256`` and ``reason`` (the same bytes refused for the same reason are one refusal)
``admin``      ``ref`` — the id of the administrator's action; without a ``ref``: ``admin``, ``action``, ``at``
               (an action without an id is distinct per instant)
=============  ===========================================================================================

``ref`` is part of the key and never of the leaf (it may be an internal message id). In a key, ``\\`` and ``|``
inside a value are escaped with ``\\`` so that no two different events share a key.

**Signed tree heads.** :class:`SignedTreeHead` is the contract's STH; :func:`sign_sth` signs
``axis-sth-v1:<tree_size>:<timestamp>:<root_hash>`` (:func:`sth_message`) with the log key (RSA PKCS#1 v1.5 or
ECDSA, SHA-256, DER); :func:`verify_sth` checks the signature, then the certificate: it chains to the axis CA,
is valid at the given time, is not on the CRL, has the digitalSignature usage, is not a CA, and is the log's
(CN ``axis transparency log`` and no UID — an agency's certificate, also issued by the axis CA, cannot sign tree
heads). Every failure is ``STH_INVALID``.

**Proofs.** :func:`inclusion_json` / :func:`consistency_json` build the contract's proof objects;
:func:`check_inclusion` / :func:`check_consistency` check them against tree heads (whose signatures the caller
checks with :func:`verify_sth`); every failure is ``PROOF_INVALID``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from axis.core import merkle
from axis.core.pki import LOG_CN, PrivateKey, cert_uid, load_trust
from axis.core.reasons import Reason, Refusal
from axis.core.verify import VerifyPolicy, cert_facts, check_time_revocation_usage, revoked_index

EVENT_TYPES = ("submitted", "refused", "routed", "stored", "status", "acked", "admin")
LEAF_VERSION = 1
#: A leaf holds digests and codes: anything longer is not one of ours.
MAX_LEAF_BYTES = 16 * 1024
#: Integers stay exact in every JSON reader (IEEE doubles): at, doc_type, tree sizes, timestamps.
MAX_INT = 2**53 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("type", "at", "sender", "document_id", "doc_type", "sha256")
_OPTIONAL = ("agency", "server", "code", "reason", "action", "admin")
_OPTIONAL_REF = (*_OPTIONAL, "ref")
_LEAF_FIELDS = frozenset({"v", *_REQUIRED, *_OPTIONAL})
STH_PREFIX = "axis-sth-v1"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


def _escape(value: str) -> str:
    if "|" not in value and "\\" not in value:
        return value
    return value.replace("\\", "\\\\").replace("|", "\\|")


@dataclass(frozen=True, slots=True)
class Event:
    """One event in a document's life. ``at``: ms since the epoch; ``sha256``: hex of the exact signed bytes
    ("" when unknown); ``ref``: the event's identity for refusals and admin actions — in :meth:`key`, never in
    :meth:`leaf`. ValueError when a field is not what the contract allows."""

    type: str
    at: int
    sender: str
    document_id: str
    doc_type: int
    sha256: str
    agency: str | None = None
    server: str | None = None
    code: str | None = None
    reason: str | None = None
    action: str | None = None
    admin: str | None = None
    ref: str | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")
        if not _is_int(self.at) or not _is_int(self.doc_type):
            raise ValueError("at and doc_type must be integers in [0, 2**53)")
        if not (isinstance(self.sender, str) and isinstance(self.document_id, str)):
            raise ValueError("sender and document_id must be strings")
        if not isinstance(self.sha256, str) or (self.sha256 and not _HEX64.fullmatch(self.sha256)):
            raise ValueError("sha256 must be 64 lower-case hex digits or empty")
        texts = [self.sender, self.document_id]
        for name in _OPTIONAL_REF:
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"{name} must be a string or None")
                texts.append(value)
        try:
            "".join(texts).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a field is not encodable as UTF-8 (a lone surrogate)") from None

    def as_dict(self) -> dict[str, Any]:
        """The leaf's fields (``"v"`` and the fields that are not None; never ``ref``)."""
        out: dict[str, Any] = {"v": LEAF_VERSION, "type": self.type, "at": self.at, "sender": self.sender,
                               "document_id": self.document_id, "doc_type": self.doc_type, "sha256": self.sha256}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def leaf(self) -> bytes:
        """The canonical JSON leaf bytes (module docstring)."""
        return orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS)

    def key(self) -> str:
        """The idempotency key (module docstring): equal for a redelivery of the same event whatever its ``at``."""
        base = [self.type, self.sender, self.document_id, str(self.doc_type)]
        t = self.type
        if t == "submitted":
            extra = [self.sha256]
        elif t == "routed":
            extra = []
        elif t in ("stored", "acked"):
            extra = [self.agency or ""]
        elif t == "status":
            extra = [self.agency or "", self.code or ""]
        elif t == "refused":
            extra = ["ref", self.ref] if self.ref is not None else ["bytes", self.sha256, self.reason or ""]
        else:  # admin
            extra = (["ref", self.ref] if self.ref is not None
                     else ["at", self.admin or "", self.action or "", str(self.at)])
        return "|".join(_escape(part) for part in (*base, *extra))


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"not an integer: {text}")


def _strict_json(data: bytes) -> Any:
    """JSON with no duplicate keys, no floats, no NaN/Infinity; ValueError otherwise."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_pairs_no_duplicates, parse_float=_no_float,
                      parse_constant=_no_float)


def event_from_leaf(leaf: bytes) -> Event:
    """The event whose canonical leaf is exactly ``leaf`` (``ref`` None); Refusal(PROOF_INVALID) otherwise."""
    if not isinstance(leaf, bytes) or len(leaf) > MAX_LEAF_BYTES:
        raise Refusal(Reason.PROOF_INVALID, "a leaf is bytes of at most 16 KiB")
    try:
        obj = _strict_json(leaf)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refusal(Reason.PROOF_INVALID, f"the leaf is not strict JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Refusal(Reason.PROOF_INVALID, "the leaf is not a JSON object")
    if obj.get("v") != LEAF_VERSION or isinstance(obj.get("v"), bool):
        raise Refusal(Reason.PROOF_INVALID, f"leaf version {obj.get('v')!r} (expected {LEAF_VERSION})")
    unknown = set(obj) - _LEAF_FIELDS
    missing = [k for k in _REQUIRED if k not in obj]
    if unknown or missing:
        raise Refusal(Reason.PROOF_INVALID, f"leaf fields: unknown {sorted(unknown)}, missing {missing}")
    for name in _OPTIONAL:
        if name in obj and obj[name] is None:
            raise Refusal(Reason.PROOF_INVALID, f"leaf field {name} is null (absent fields are omitted)")
    try:
        event = Event(**{k: v for k, v in obj.items() if k != "v"})
    except (TypeError, ValueError) as exc:
        raise Refusal(Reason.PROOF_INVALID, f"not an event: {exc}") from None
    if event.leaf() != leaf:
        raise Refusal(Reason.PROOF_INVALID, "the leaf is not in canonical form")
    return event


# ---- signed tree heads ------------------------------------------------------------------------------------------


def sth_message(tree_size: int, timestamp: int, root_hash_hex: str) -> bytes:
    """The bytes an STH signature covers: ASCII ``axis-sth-v1:<tree_size>:<timestamp>:<root_hash>``."""
    return f"{STH_PREFIX}:{tree_size}:{timestamp}:{root_hash_hex}".encode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict, canonical base64 (no whitespace, no stray bits): ValueError otherwise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """The contract's STH: ``root_hash`` hex, ``signature`` base64 (DER for ECDSA), ``certificate`` the log's PEM."""

    tree_size: int
    timestamp: int
    root_hash: str
    signature: str
    certificate: str

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)

    def message(self) -> bytes:
        return sth_message(self.tree_size, self.timestamp, self.root_hash)

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object (a dict, ready for ``json.dumps`` or to embed in a receipt)."""
        return {"tree_size": self.tree_size, "timestamp": self.timestamp, "root_hash": self.root_hash,
                "signature": self.signature, "certificate": self.certificate}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> SignedTreeHead:
        """Parse an STH (an object, or its JSON text), strictly: exactly the five fields, sizes and times
        integers, a 64-digit lower-case hex root, canonical base64, a PEM certificate. Refusal(STH_INVALID)
        otherwise. The signature is NOT checked here (:func:`verify_sth`)."""
        if isinstance(data, str | bytes):
            try:
                data = _strict_json(data.encode("utf-8") if isinstance(data, str) else data)
            except (ValueError, RecursionError) as exc:
                raise Refusal(Reason.STH_INVALID, f"the tree head is not strict JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise Refusal(Reason.STH_INVALID, "the tree head is not a JSON object")
        names = [f.name for f in fields(cls)]
        if set(data) != set(names):
            raise Refusal(Reason.STH_INVALID, f"a tree head has exactly the fields {', '.join(names)}")
        size, ts, root, sig, cert = (data[n] for n in names)
        if not _is_int(size) or not _is_int(ts):
            raise Refusal(Reason.STH_INVALID, "tree_size and timestamp must be integers in [0, 2**53)")
        if not isinstance(root, str) or not _HEX64.fullmatch(root):
            raise Refusal(Reason.STH_INVALID, "root_hash must be 64 lower-case hex digits")
        if not isinstance(sig, str) or not sig:
            raise Refusal(Reason.STH_INVALID, "signature must be base64")
        try:
            _b64decode(sig)
        except ValueError as exc:
            raise Refusal(Reason.STH_INVALID, f"signature: {exc}") from None
        if not isinstance(cert, str) or not cert.startswith("-----BEGIN CERTIFICATE-----"):
            raise Refusal(Reason.STH_INVALID, "certificate must be a PEM certificate")
        return cls(size, ts, root, sig, cert)


def sign_sth(tree_size: int, timestamp: int, root: bytes, key: PrivateKey,
             cert: x509.Certificate | bytes | str) -> SignedTreeHead:
    """Sign a tree head with the log key: RSA PKCS#1 v1.5 or ECDSA (DER), SHA-256, by the key's type."""
    if not _is_int(tree_size) or not _is_int(timestamp):
        raise ValueError("tree_size and timestamp must be integers in [0, 2**53)")
    if len(root) != merkle.HASH_SIZE:
        raise ValueError("a root hash is 32 bytes")
    if isinstance(cert, x509.Certificate):
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    else:
        pem = cert.decode("ascii") if isinstance(cert, bytes) else cert
    message = sth_message(tree_size, timestamp, root.hex())
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        raise TypeError(f"a {type(key).__name__} cannot sign tree heads (RSA or EC)")
    return SignedTreeHead(tree_size, timestamp, root.hex(), base64.b64encode(signature).decode("ascii"), pem)


def _check_signature(sth: SignedTreeHead, cert: x509.Certificate) -> None:
    try:
        signature = _b64decode(sth.signature)
    except ValueError as exc:
        raise Refusal(Reason.STH_INVALID, f"signature: {exc}") from None
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, sth.message(), padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, sth.message(), ec.ECDSA(hashes.SHA256()))
        else:
            raise Refusal(Reason.STH_INVALID, f"a {type(public).__name__} cannot sign tree heads")
    except InvalidSignature:
        raise Refusal(Reason.STH_INVALID, "the signature does not match the tree head") from None


def verify_sth(sth: SignedTreeHead, trusted_ca_pems: Sequence[bytes], crl_pem: bytes | None = None,
               at: dt.datetime | None = None) -> None:
    """Check a tree head (module docstring) at ``at`` (default: now); Refusal(STH_INVALID, detail) when it fails.

    The signature is checked first, the certificate after, so that a tampered tree head is always reported as
    such whatever certificate it carries."""
    if not _HEX64.fullmatch(sth.root_hash) or not _is_int(sth.tree_size) or not _is_int(sth.timestamp):
        raise Refusal(Reason.STH_INVALID, "malformed tree head")
    try:
        certs = x509.load_pem_x509_certificates(sth.certificate.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Refusal(Reason.STH_INVALID, "the certificate cannot be decoded") from None
    if len(certs) != 1:
        raise Refusal(Reason.STH_INVALID, "the tree head must carry exactly one certificate")
    cert = certs[0]
    _check_signature(sth, cert)
    try:
        anchors, crls = load_trust(b"\n".join(trusted_ca_pems), crl_pem)
    except ValueError as exc:
        raise Refusal(Reason.STH_INVALID, f"the trusted CA or CRL cannot be read: {exc}") from None
    now = at or dt.datetime.now(dt.UTC)
    try:
        facts = cert_facts([cert], anchors)
        revoked = revoked_index(VerifyPolicy(trust_anchors=anchors, crls=crls))
        check_time_revocation_usage(facts, now, revoked)
    except Refusal as exc:
        raise Refusal(Reason.STH_INVALID, f"the log certificate: {exc}") from None
    except ValueError as exc:  # a CRL not signed by the CA
        raise Refusal(Reason.STH_INVALID, str(exc)) from None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cert_uid(cert) is not None or len(names) != 1 or names[0].value != LOG_CN:
        raise Refusal(Reason.STH_INVALID, f"not the log's certificate ({cert.subject.rfc4514_string()})")


# ---- proofs -----------------------------------------------------------------------------------------------------


def inclusion_json(leaf_index: int, tree_size: int, leaf: bytes, audit_path: Sequence[bytes]) -> dict[str, Any]:
    """The contract's inclusion proof object."""
    return {"leaf_index": leaf_index, "tree_size": tree_size, "leaf": base64.b64encode(leaf).decode("ascii"),
            "audit_path": [h.hex() for h in audit_path]}


def consistency_json(first: int, second: int, consistency_path: Sequence[bytes]) -> dict[str, Any]:
    """The contract's consistency proof object."""
    return {"first": first, "second": second, "consistency_path": [h.hex() for h in consistency_path]}


def _path(value: object, name: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > merkle.MAX_PATH:
        raise Refusal(Reason.PROOF_INVALID, f"{name} must be a list of at most {merkle.MAX_PATH} hashes")
    out = []
    for item in value:
        if not isinstance(item, str) or not _HEX64.fullmatch(item):
            raise Refusal(Reason.PROOF_INVALID, f"{name} holds something other than 64 lower-case hex digits")
        out.append(bytes.fromhex(item))
    return out


def _fields(proof: object, names: tuple[str, ...]) -> list[Any]:
    if not isinstance(proof, Mapping) or set(proof) != set(names):
        raise Refusal(Reason.PROOF_INVALID, f"a proof has exactly the fields {', '.join(names)}")
    return [proof[n] for n in names]


def check_inclusion(leaf: bytes, proof: Mapping[str, Any], sth: SignedTreeHead) -> None:
    """``proof`` (contract shape) proves ``leaf`` in the tree ``sth`` heads; Refusal(PROOF_INVALID) otherwise.
    The proof's ``leaf`` must be ``leaf`` and its ``tree_size`` the STH's. The STH itself: :func:`verify_sth`."""
    index, size, leaf_b64, audit = _fields(proof, ("leaf_index", "tree_size", "leaf", "audit_path"))
    if not _is_int(index) or not _is_int(size):
        raise Refusal(Reason.PROOF_INVALID, "leaf_index and tree_size must be integers")
    try:
        carried = _b64decode(leaf_b64) if isinstance(leaf_b64, str) else None
    except ValueError:
        carried = None
    if carried is None:
        raise Refusal(Reason.PROOF_INVALID, "leaf must be canonical base64")
    if carried != leaf:
        raise Refusal(Reason.PROOF_INVALID, "the proof is for another leaf")
    if size != sth.tree_size:
        raise Refusal(Reason.PROOF_INVALID, f"the proof is for a tree of {size} leaves, the STH of {sth.tree_size}")
    path = _path(audit, "audit_path")
    if not merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, path, bytes.fromhex(sth.root_hash)):
        raise Refusal(Reason.PROOF_INVALID, f"the audit path does not lead leaf {index} to the STH's root")


def check_consistency(proof: Mapping[str, Any], first: SignedTreeHead, second: SignedTreeHead) -> None:
    """``proof`` (contract shape) proves the tree ``first`` heads a prefix of the tree ``second`` heads;
    Refusal(PROOF_INVALID) otherwise. The STHs themselves: :func:`verify_sth`."""
    m, n, raw = _fields(proof, ("first", "second", "consistency_path"))
    if not _is_int(m) or not _is_int(n):
        raise Refusal(Reason.PROOF_INVALID, "first and second must be integers")
    if (m, n) != (first.tree_size, second.tree_size):
        raise Refusal(Reason.PROOF_INVALID, f"the proof is from {m} to {n} leaves, the STHs of "
                                            f"{first.tree_size} and {second.tree_size}")
    path = _path(raw, "consistency_path")
    if not merkle.verify_consistency(m, n, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash), path):
        raise Refusal(Reason.PROOF_INVALID, f"the tree of {n} leaves does not extend the tree of {m}")
