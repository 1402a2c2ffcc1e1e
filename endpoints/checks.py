"""The signed-document checks of an endpoint host process: every recipient server verifies the exact bytes it
stores (signature, chain, signer, schema), once per process for the same bytes (:class:`DeliveryChecks`) and,
through the work directory's records (:mod:`endpoints.checked`), once per machine."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from axis.core import envelope, schema
from axis.core.reasons import Reason, Refusal
from axis.core.verify import CertFacts, check_time_revocation_usage
from endpoints.checked import CheckedRecords, records_root

#: documents the signed-document checks of this process answered, by how (for ``axis_endpoint_document_checks``):
#: ``full`` checked here, ``process`` from this process's cache, ``machine`` from another process's record
TOTALS: dict[str, int] = {"full": 0, "process": 0, "machine": 0}
_totals_lock = threading.Lock()


def _count(how: str) -> None:
    with _totals_lock:
        TOTALS[how] += 1


#: documents a process remembers. An entry must outlive the time from a document's door to its last delivery in the
#: process, which a saturated router's batches of 512 stretch to seconds: with one router at ~240 documents/s, 1,024
#: entries let 0.62 deliveries a document miss and read the machine's records again (bench/README.md, session 9).
#: ~4.6 KB an entry (a message without attachments): ~19 MB at most.
CACHE_ENTRIES = 4096


def check_delivery(verifier: Any, body: bytes, work_dir: Path | None = None) -> tuple[envelope.DocumentMessage, str]:
    """CPU part of a delivery (run in the CPU pool): full signature check of the exact bytes, schema, model; with
    the hex SHA-256 of those bytes (the check's own cache key: what the ``stored`` leaf of the log names)."""
    msg, key = checks_for(verifier, work_dir).check_keyed(body)
    if not isinstance(msg, envelope.DocumentMessage):
        raise Refusal(Reason.SCHEMA_INVALID, "a status was delivered as a document")
    return msg, key.hex()


def full_check(verifier: Any, body: bytes) -> tuple[envelope.Message, CertFacts | None]:
    """The whole check of a signed envelope, nothing remembered: hardened parse, profile, signature, chain and
    signer (``verifier``), then the schema, then the model; with the certificate facts a later moment checks
    again. Raises Refusal."""
    verified, facts = verifier.verify_with_facts(body)
    schema.validate(verified.root)
    return envelope.from_element(verified.root), facts


class DeliveryChecks:
    """The signed-document checks of one host process, remembered by the SHA-256 of the exact bytes.

    A document fanned out to several servers of one host process reaches it once per server, and a document
    submitted through a server of this process may come back to another: the same bytes, checked against the
    same policy. Everything the check decides is a function of those bytes and the policy
    (well-formedness, profile, digest and signature value, chain, signer, schema) except the certificate's
    validity window, the CRL and the key usage at this moment: those are checked again at every delivery
    (:func:`axis.core.verify.check_time_revocation_usage`). The cache belongs to one :class:`~axis.core.verify.Verifier`
    (its trust anchors and CRLs): a reload makes a new verifier, hence an empty cache. Only successes are kept
    (a refusal is never expected here), without attachment data (the delivery stores the exact bytes), at most
    ``size`` entries (:data:`CACHE_ENTRIES`). Thread-safe: large documents are checked in the CPU pool.

    With ``records`` (:class:`endpoints.checked.CheckedRecords`), a miss here looks for what another host process
    of the machine checked before checking in full, and a full check is recorded for the others.
    """

    def __init__(self, verifier: Any, size: int = 0, records: CheckedRecords | None = None) -> None:
        self.verifier = verifier
        self.size = size or CACHE_ENTRIES
        self.records = records
        self._done: OrderedDict[bytes, tuple[envelope.Message, CertFacts | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def check(self, body: bytes) -> envelope.Message:
        """The message of a signed envelope that passes the full check (else Refusal, never remembered): what the
        door asks of a submission — new bytes, as a rule, so the machine's records are not looked up (they are
        written: the recipients' processes will look)."""
        return self.check_keyed(body, look_up=False)[0]

    def check_keyed(self, body: bytes, *, look_up: bool = True) -> tuple[envelope.Message, bytes]:
        """:meth:`check`, with the SHA-256 of ``body`` it is remembered by; ``look_up``: try the records of the
        machine's other host processes before checking in full."""
        key = hashlib.sha256(body).digest()
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                self._done.move_to_end(key)
        if done is not None:
            msg, facts = done
            if facts is not None:  # the moment-dependent part of the certificate check, again
                check_time_revocation_usage(facts, self.verifier.policy.clock(), self.verifier.revoked,
                                            self.verifier.crl_fresh_until)
            self.hits += 1
            _count("process")
            return msg, key
        recorded = self.records.get(key) if self.records is not None and look_up else None
        if recorded is not None:  # checked in full by another process of this machine, under the same policy
            msg, facts = recorded
            check_time_revocation_usage(facts, self.verifier.policy.clock(), self.verifier.revoked,
                                        self.verifier.crl_fresh_until)
            self._keep(key, msg, facts)
            _count("machine")
            return msg, key
        msg, facts = full_check(self.verifier, body)
        kept = dataclasses.replace(msg, attachments=()) if isinstance(msg, envelope.DocumentMessage) else msg
        self._keep(key, kept, facts)
        _count("full")
        if self.records is not None and facts is not None and isinstance(kept, envelope.DocumentMessage):
            self.records.put(key, kept, facts)
        return msg, key

    def _keep(self, key: bytes, kept: envelope.Message, facts: CertFacts | None) -> None:
        with self._lock:
            self._done[key] = (kept, facts)
            if len(self._done) > self.size:
                self._done.popitem(last=False)


_checks: weakref.WeakKeyDictionary[Any, DeliveryChecks] = weakref.WeakKeyDictionary()
_checks_lock = threading.Lock()


def checks_for(verifier: Any, work_dir: Path | None = None) -> DeliveryChecks:
    """The process's :class:`DeliveryChecks` for ``verifier`` (one per verifier: a reload starts afresh), sharing
    what it checks with the other host processes of ``work_dir`` (:mod:`endpoints.checked`) when given."""
    with _checks_lock:
        checks = _checks.get(verifier)
        if checks is None:
            root = records_root(work_dir) if work_dir is not None else None
            shared = CheckedRecords(root, verifier) if root is not None else None
            checks = _checks[verifier] = DeliveryChecks(verifier, records=shared)
        return checks
