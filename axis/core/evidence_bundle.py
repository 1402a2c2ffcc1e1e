"""The offline evidence bundle (contract section 5, ``axis evidence export`` / ``axis evidence verify``).

One document's evidence in one ZIP file, laid out like an ASiC-E container (ETSI EN 319 162), so that a sender, a
recipient or a court can check what happened to a document with no axis running — only this file and the axis
CA's certificate:

=============================  =====================================================================================
``mimetype``                   first member, stored (not compressed): ``application/vnd.etsi.asic-e+zip``
``envelope.xml``               the signed edXML envelope, its exact bytes
``META-INF/leaves.json``       ``[{"leaf_index": I, "leaf": BASE64, "proof": INCLUSION PROOF}, …]`` — the
                               document's leaves of the log, in log order, each with its inclusion proof
                               (contract shape) against the tree head below
``META-INF/sth.json``          the signed tree head (contract shape) every proof leads to
``META-INF/log-certificate.pem``  the tree head's certificate (the log's signing certificate)
``META-INF/ca.pem``            the axis CA's certificate (informative: a verifier trusts its OWN copy)
``META-INF/crl.pem``           the axis CA's CRL, when there is one
``META-INF/manifest.json``     ``{"version": 1, "algorithm": "sha256", "files": {NAME: HEX, …}}`` — every other
                               member's SHA-256
=============================  =====================================================================================

:func:`build_bundle` writes it (deterministic bytes: the members' times are the tree head's). :func:`verify_bundle`
checks it, in this order, and reports the first failure with its reason code:

1. the container: a ZIP with exactly these members, each once, ``mimetype`` first with the right value, within
   size limits (``PROOF_INVALID`` otherwise: what is not one of our bundles proves nothing);
2. the tree head: strict shape, ``log-certificate.pem`` is its certificate, its signature, and its certificate
   chains to the GIVEN CA (never the bundle's ``ca.pem``), is the log's, not revoked on the bundle's CRL (or the
   caller's) and valid at ``at`` (default: now) — :func:`axis.core.evidence.verify_sth`; ``STH_INVALID``;
3. every leaf: a canonical event leaf, all of one sender and one document, distinct indices, its proof's
   ``leaf_index`` and ``leaf`` its own, its audit path leads it to the tree head's root —
   :func:`axis.core.evidence.check_inclusion`; ``PROOF_INVALID``;
4. the envelope per the signing profile (contract section 1, :class:`axis.core.verify.Verifier` trusting the given
   CA): the signature and digest, the chain, the signer. An agency certificate may have expired since: validity
   is checked at the time of the ``submitted`` leaf (the axis attested that time in its log; without such a leaf,
   the earliest leaf's), and a certificate revoked on the CRL counts as revoked only if its revocation date is
   not after that time (the revocation of a key after it signed does not unsign what it signed). Its reason
   (``SIGNATURE_INVALID``, ``CERT_UNTRUSTED``, ``CERT_REVOKED``, …);
5. the envelope is the one the leaves name: its sender and DocumentId are theirs, every leaf's ``sha256`` that is
   not empty is the SHA-256 of its exact bytes, and at least one leaf names it; ``PROOF_INVALID``;
6. the manifest: it lists every other member, and each digest matches; ``PROOF_INVALID``. (The manifest is not
   signed — it only catches damage; the proofs and signatures above are what prove.)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography import x509

from axis.core.envelope import DocumentMessage
from axis.core.evidence import (
    Event,
    SignedTreeHead,
    check_inclusion,
    event_from_leaf,
    verify_sth,
)
from axis.core.pki import issuer_public_key, load_trust
from axis.core.reasons import Reason, Refusal
from axis.core.verify import CertFacts, Verifier, VerifyPolicy

MIMETYPE = "application/vnd.etsi.asic-e+zip"
M_MIMETYPE = "mimetype"
M_ENVELOPE = "envelope.xml"
M_LEAVES = "META-INF/leaves.json"
M_STH = "META-INF/sth.json"
M_LOG_CERT = "META-INF/log-certificate.pem"
M_CA = "META-INF/ca.pem"
M_CRL = "META-INF/crl.pem"
M_MANIFEST = "META-INF/manifest.json"
REQUIRED = (M_MIMETYPE, M_ENVELOPE, M_LEAVES, M_STH, M_LOG_CERT, M_CA, M_MANIFEST)
KNOWN = frozenset({*REQUIRED, M_CRL})
MANIFEST_VERSION = 1

#: the largest envelope a bundle may carry (the axis refuses envelopes far below this: 25 MiB by default)
MAX_ENVELOPE_BYTES = 256 * 1024 * 1024
#: the largest other member (leaves with their proofs, certificates, CRL, manifest)
MAX_MEMBER_BYTES = 32 * 1024 * 1024
MAX_LEAVES = 10_000
_ZIP_EPOCH = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What :func:`verify_bundle` found. ``ok`` with ``reason`` None, or the first failure's ``reason`` and
    ``detail``. ``document_id``/``sender``: the document the leaves are about (None when the leaves could not be
    read); ``leaves``: their events (``{"leaf_index", "type", "at", …leaf fields}``, in log order) once proven;
    ``sha256``: the envelope's digest; ``tree_size``: the tree head's size (once it verified)."""

    ok: bool
    reason: Reason | None = None
    detail: str = ""
    document_id: str | None = None
    sender: str | None = None
    leaves: list[dict[str, Any]] = field(default_factory=list)
    sha256: str | None = None
    tree_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The contract's check object (``{"ok", "reason", "detail", …}``), JSON-ready."""
        return {"ok": self.ok, "reason": self.reason.value if self.reason else None, "detail": self.detail,
                "document_id": self.document_id, "sender": self.sender, "sha256": self.sha256,
                "tree_size": self.tree_size, "leaves": list(self.leaves)}


# ---- building ---------------------------------------------------------------------------------------------------


def _zip_time(sth: SignedTreeHead) -> tuple[int, int, int, int, int, int]:
    when = max(dt.datetime.fromtimestamp(sth.timestamp / 1000, dt.UTC), _ZIP_EPOCH)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def select_leaves(envelope: bytes, leaves: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The leaves (``(index, leaf)``, e.g. :meth:`axis.log.store.LogStore.leaves_of`) that belong in
    ``envelope``'s bundle: those whose ``sha256`` is the envelope's or empty (the same DocumentId submitted again
    with other bytes is another document's evidence)."""
    digest = hashlib.sha256(envelope).hexdigest()
    out = []
    for index, leaf in leaves:
        sha = event_from_leaf(leaf).sha256
        if sha in ("", digest):
            out.append((index, leaf))
    return out


def build_bundle(envelope: bytes, leaves: Sequence[tuple[int, bytes, Mapping[str, Any]]], sth: SignedTreeHead,
                 ca_pem: bytes, crl_pem: bytes | None) -> bytes:
    """The bundle's bytes (module docstring). ``leaves``: ``(leaf_index, leaf bytes, inclusion proof object)`` of
    the document's leaves (:func:`select_leaves`), each proof against ``sth`` (:func:`axis.core.evidence.
    inclusion_json`). ValueError when a leaf is not one of this envelope's or its proof does not lead to ``sth``:
    the bundle would not verify."""
    if not leaves:
        raise ValueError("a bundle needs at least one leaf of the document")
    digest = hashlib.sha256(envelope).hexdigest()
    items = []
    for index, leaf, proof in sorted(leaves, key=lambda item: item[0]):
        try:
            event = event_from_leaf(leaf)
            if proof.get("leaf_index") != index:
                raise Refusal(Reason.PROOF_INVALID, f"the proof of leaf {index} is for leaf {proof.get('leaf_index')}")
            check_inclusion(leaf, proof, sth)
        except Refusal as exc:
            raise ValueError(f"leaf {index}: {exc.detail}") from None
        if event.sha256 not in ("", digest):
            raise ValueError(f"leaf {index} names other bytes (sha256 {event.sha256})")
        items.append({"leaf_index": index, "leaf": base64.b64encode(leaf).decode("ascii"), "proof": dict(proof)})
    members: list[tuple[str, bytes]] = [
        (M_ENVELOPE, bytes(envelope)),
        (M_LEAVES, _canonical_json(items)),
        (M_STH, _canonical_json(sth.to_json())),
        (M_LOG_CERT, sth.certificate.encode("ascii")),
        (M_CA, bytes(ca_pem)),
    ]
    if crl_pem:
        members.append((M_CRL, bytes(crl_pem)))
    manifest = {"version": MANIFEST_VERSION, "algorithm": "sha256",
                "files": {M_MIMETYPE: hashlib.sha256(MIMETYPE.encode("ascii")).hexdigest(),
                          **{name: hashlib.sha256(data).hexdigest() for name, data in members}}}
    members.append((M_MANIFEST, _canonical_json(manifest)))
    when = _zip_time(sth)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo(M_MIMETYPE, when)
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, MIMETYPE.encode("ascii"))
        for name, data in members:
            info = zipfile.ZipInfo(name, when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


# ---- verifying --------------------------------------------------------------------------------------------------


def _proof_invalid(detail: str) -> Refusal:
    return Refusal(Reason.PROOF_INVALID, detail)


def open_container(source: bytes | str | os.PathLike[str] | IO[bytes], what: str, known: Collection[str],
                   required: Sequence[str]) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """An ASiC-like ZIP container (an evidence bundle, a log segment) and its members, once its shape is right:
    each member once, none unknown, none missing, ``mimetype`` first and stored, nothing encrypted; else
    Refusal(PROOF_INVALID) naming ``what`` it should have been. The caller closes the ZipFile."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise _proof_invalid(f"not {what} (a ZIP file): {exc}") from None
    infos = zf.infolist()
    names = [i.filename for i in infos]
    problem = None
    if len(names) != len(set(names)):
        problem = f"{what} holds a member twice"
    elif set(names) - set(known) or [n for n in required if n not in names]:
        problem = (f"not {what}: unknown members {sorted(set(names) - set(known))}, "
                   f"missing {[n for n in required if n not in names]}")
    elif names[0] != M_MIMETYPE or infos[0].compress_type != zipfile.ZIP_STORED:
        problem = f"the first member of {what} is 'mimetype', stored"
    elif any(i.flag_bits & 0x1 for i in infos):
        problem = f"{what} holds an encrypted member"
    if problem is not None:
        zf.close()
        raise _proof_invalid(problem)
    return zf, infos


def _members(data: bytes) -> dict[str, bytes]:
    """The bundle's members by name, read within the limits; Refusal(PROOF_INVALID) for anything else."""
    zf, infos = open_container(data, "an evidence bundle", KNOWN, REQUIRED)
    with zf:
        out: dict[str, bytes] = {}
        for info in infos:
            limit = MAX_ENVELOPE_BYTES if info.filename == M_ENVELOPE else MAX_MEMBER_BYTES
            if info.file_size > limit:
                raise _proof_invalid(f"{info.filename}: too large")
            try:
                with zf.open(info) as f:
                    body = f.read(limit + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise _proof_invalid(f"{info.filename} cannot be read: {exc}") from None
            if len(body) > limit:
                raise _proof_invalid(f"{info.filename} is too large")
            out[info.filename] = body
    if out[M_MIMETYPE] != MIMETYPE.encode("ascii"):
        raise _proof_invalid(f"mimetype is not {MIMETYPE}")
    return out


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _proof_invalid(f"{name} is not JSON: {exc}") from None


def _leaves(raw: Any, sth: SignedTreeHead) -> list[tuple[int, Event]]:
    """Step 3 of the module docstring: the proven events, in log order."""
    if not isinstance(raw, list) or not raw:
        raise _proof_invalid("leaves.json must be a non-empty list")
    if len(raw) > MAX_LEAVES:
        raise _proof_invalid(f"more than {MAX_LEAVES} leaves")
    out: list[tuple[int, Event]] = []
    for n, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"leaf_index", "leaf", "proof"}:
            raise _proof_invalid(f"leaves[{n}] must have exactly leaf_index, leaf and proof")
        index, leaf_b64, proof = item["leaf_index"], item["leaf"], item["proof"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise _proof_invalid(f"leaves[{n}].leaf_index must be an integer")
        try:
            leaf = base64.b64decode(leaf_b64.encode("ascii"), validate=True) if isinstance(leaf_b64, str) else None
        except (binascii.Error, UnicodeEncodeError):
            leaf = None
        if leaf is None:
            raise _proof_invalid(f"leaves[{n}].leaf must be base64")
        event = event_from_leaf(leaf)
        if not isinstance(proof, dict) or proof.get("leaf_index") != index:
            raise _proof_invalid(f"leaf {index}: its proof is for another leaf index")
        try:
            check_inclusion(leaf, proof, sth)
        except Refusal as exc:
            raise _proof_invalid(f"leaf {index}: {exc.detail}") from None
        if out and index <= out[-1][0]:
            raise _proof_invalid("the leaves are not in log order (or one is there twice)")
        if out and (event.sender, event.document_id) != (out[0][1].sender, out[0][1].document_id):
            raise _proof_invalid(f"leaf {index} is about another document")
        out.append((index, event))
    return out


def _signed_at(events: Sequence[Event], digest: str) -> dt.datetime:
    """When the envelope was signed at the latest, per the log: its ``submitted`` leaf, else the earliest leaf."""
    submitted = [e.at for e in events if e.type == "submitted" and e.sha256 in ("", digest)]
    ms = submitted[0] if submitted else min(e.at for e in events)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _check_revoked(facts: CertFacts, crls: Sequence[x509.CertificateRevocationList], when: dt.datetime) -> None:
    """CERT_REVOKED when the signer or an intermediate was revoked at ``when`` or before."""
    for cert in facts.path[:-1]:
        for crl in crls:
            if crl.issuer != cert.issuer:
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= when:
                raise Refusal(Reason.CERT_REVOKED, f"certificate {cert.serial_number:x} was revoked at "
                                                   f"{entry.revocation_date_utc.isoformat()}, before "
                                                   f"{when.isoformat()}")


def _check_envelope(envelope: bytes, ca_pem: bytes, crl_pem: bytes | None, when: dt.datetime
                    ) -> DocumentMessage:
    """Step 4: the signing profile at ``when``; returns the verified document."""
    anchors, crls = load_trust(ca_pem, crl_pem)
    for crl in crls:
        issuer = next((a for a in anchors if a.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer_public_key(issuer)):
            raise Refusal(Reason.CERT_UNTRUSTED, "the CRL is not signed by the trusted CA")
    # revocation is checked below, with the revocation dates (the Verifier knows no dates)
    policy = VerifyPolicy(trust_anchors=anchors, crls=(), max_bytes=MAX_ENVELOPE_BYTES, clock=lambda: when)
    verified, facts = Verifier(policy, cache_size=1).verify_with_facts(envelope)
    if facts is not None:
        _check_revoked(facts, crls, when)
    message = verified.message
    if not isinstance(message, DocumentMessage):
        raise _proof_invalid("the envelope is not a document message")
    return message


def _manifest(members: Mapping[str, bytes]) -> None:
    raw = _json(members[M_MANIFEST], "manifest.json")
    if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION or raw.get("algorithm") != "sha256" \
            or not isinstance(raw.get("files"), dict):
        raise _proof_invalid("manifest.json is not a version 1 SHA-256 manifest")
    listed = raw["files"]
    expected = set(members) - {M_MANIFEST}
    if set(listed) != expected:
        raise _proof_invalid(f"the manifest lists {sorted(listed)}, the bundle holds {sorted(expected)}")
    for name in sorted(expected):
        if listed[name] != hashlib.sha256(members[name]).hexdigest():
            raise _proof_invalid(f"the manifest's digest of {name} does not match it")


def verify_bundle(data: bytes, ca_pem: bytes, *, at: dt.datetime | None = None,
                  crl_pem: bytes | None = None) -> BundleReport:
    """Check an evidence bundle offline against the CA certificate(s) ``ca_pem`` (module docstring for what and in
    which order). ``at``: when the tree head's certificate must be valid (default now; pass an earlier time to
    check an old bundle whose log certificate has expired since). ``crl_pem``: a CRL to use instead of the
    bundle's (a fresher one). Never raises for a bad bundle: the report says why."""
    found: dict[str, Any] = {}
    try:
        members = _members(data)
        sth = SignedTreeHead.from_json(members[M_STH])
        if members[M_LOG_CERT].decode("ascii", "replace").strip() != sth.certificate.strip():
            raise Refusal(Reason.STH_INVALID, "log-certificate.pem is not the tree head's certificate")
        crl = crl_pem if crl_pem is not None else members.get(M_CRL)
        verify_sth(sth, [ca_pem], crl, at=at)
        found["tree_size"] = sth.tree_size
        proven = _leaves(_json(members[M_LEAVES], "leaves.json"), sth)
        first = proven[0][1]
        found.update(document_id=first.document_id, sender=first.sender,
                     leaves=[{"leaf_index": i, **e.as_dict()} for i, e in proven])
        envelope = members[M_ENVELOPE]
        digest = found["sha256"] = hashlib.sha256(envelope).hexdigest()
        events = [e for _, e in proven]
        message = _check_envelope(envelope, ca_pem, crl, _signed_at(events, digest))
        if (message.sender.organ_id, message.document_id) != (first.sender, first.document_id):
            raise _proof_invalid(f"the envelope is {message.document_id!r} from {message.sender.organ_id!r}; the "
                                 f"leaves are about {first.document_id!r} from {first.sender!r}")
        for index, event in proven:
            if event.sha256 and event.sha256 != digest:
                raise _proof_invalid(f"leaf {index} names other bytes (sha256 {event.sha256}, the envelope's is "
                                     f"{digest})")
        if not any(e.sha256 == digest for e in events):
            raise _proof_invalid("no leaf names the envelope's digest")
        _manifest(members)
    except Refusal as exc:
        return BundleReport(False, exc.reason, exc.detail, **found)
    except ValueError as exc:  # a certificate or CRL that cannot be read
        return BundleReport(False, Reason.PROOF_INVALID, f"the bundle cannot be read: {exc}", **found)
    return BundleReport(True, None, f"{len(found['leaves'])} leaves proven in the tree of {found['tree_size']}",
                        **found)
