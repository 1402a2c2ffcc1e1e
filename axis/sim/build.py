"""Planned messages → real edXML bytes, signed with the sending agency's own key (EC P-256 in the demo).

Pure apart from reading key files once: :class:`Builder` turns a :class:`~axis.sim.plan.PlannedMessage` into the
bytes the simulator submits, with :mod:`axis.core.envelope` building the document and :mod:`axis.core.signing` signing
it. Bad envelopes are made bad here, on purpose and in one way each:

- ``SIGNATURE_INVALID``: signed, then the subject is altered after signing (the digest no longer matches);
- ``SIGNER_MISMATCH``: signed with another agency's key and certificate;
- ``UNKNOWN_RECIPIENT``: properly signed, one recipient is a code no directory holds (the plan put it there);
- ``FORBIDDEN``: properly signed, but submitted with another agency's credentials (the driver does that);
- ``XML_MALFORMED``: the signed bytes cut in the middle.

:func:`build_batch` is the worker-process entry point: signing runs beside the driver's event loop, so the
driver keeps the axis busy while the next batch is being signed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import random
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axis.sim.plan import PlannedMessage

TYPE_CODES = {
    "Công văn": "1",
    "Quyết định": "2",
    "Thông báo": "3",
    "Báo cáo": "4",
    "Tờ trình": "5",
    "Kế hoạch": "6",
    "Giấy mời": "7",
    "Chỉ thị": "8",
    "Nghị quyết": "9",
}
_SUBJECT_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?Subject>")


@dataclass(frozen=True, slots=True)
class KeyPaths:
    key: str
    cert: str
    name: str = ""


class Builder:
    """Builds and signs planned messages. ``keys`` maps agency code → key/cert paths (connections.json)."""

    def __init__(self, keys: Mapping[str, KeyPaths], *, sign: bool = True) -> None:
        self.keys = dict(keys)
        self.sign = sign
        self._loaded: dict[str, tuple[Any, Any]] = {}

    def _key(self, code: str) -> tuple[Any, Any]:
        got = self._loaded.get(code)
        if got is None:
            from axis.core import pki

            kp = self.keys[code]
            key = pki.load_key(Path(kp.key).read_bytes())
            cert = pki.load_certs(Path(kp.cert).read_bytes())[0]
            got = self._loaded[code] = (key, cert)
        return got

    def unsigned(self, p: PlannedMessage) -> bytes:
        from axis.core import envelope as env

        rng = random.Random(p.seq)  # attachment bytes are a function of the message alone
        atts = [
            env.Attachment(
                content_id=f"cid:sim-{p.seq}-{i + 1}",
                name=a.name,
                data=rng.randbytes(a.size),
                content_type=a.content_type,
                description=a.name,
            )
            for i, a in enumerate(p.attachments)
        ]
        sender_name = self.keys[p.sender].name if p.sender in self.keys else ""
        msg = env.new_document(
            env.Organization(organ_id=p.sender, organ_name=sender_name),
            list(p.recipients),
            p.subject,
            number=str(p.number),
            notation=p.notation,
            content=f"{p.type_name}: {p.subject}",
            attachments=atts,
            doc_type=p.doc_type,
            related_document_id=p.related_document_id,
            date=p.at,
            timestamp=p.at,
            document_type=env.DocumentType(
                type=TYPE_CODES.get(p.type_name, "1"), type_detail="0", type_name=p.type_name
            ),
        )
        return env.build(msg)

    def build(self, p: PlannedMessage) -> bytes:
        data = self.unsigned(p)
        if not self.sign and p.expect not in ("SIGNATURE_INVALID", "SIGNER_MISMATCH"):
            return _spoil(p, data)
        from axis.core import signing

        key, cert = self._key(p.signer or p.sender)
        return _spoil(p, signing.sign(data, key, cert))


def _spoil(p: PlannedMessage, data: bytes) -> bytes:
    if p.expect == "SIGNATURE_INVALID":
        m = _SUBJECT_END.search(data)
        if m is None:  # no subject element: alter the last text byte of the document instead
            return data[:-20] + data[-20:].replace(b">", b"> ", 1)
        return data[: m.start()] + " (đã sửa)".encode() + data[m.start() :]
    if p.expect == "XML_MALFORMED":
        return data[: len(data) // 2]
    return data


# ---------------------------------------------------------------- worker-process entry points

_WORKER: Builder | None = None


def init_worker(keys: Mapping[str, KeyPaths], sign: bool) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it shuts the pool down
    _WORKER = Builder(keys, sign=sign)


def build_batch(batch: Sequence[PlannedMessage]) -> list[bytes]:
    """Build one batch in a worker process (after :func:`init_worker`)."""
    assert _WORKER is not None, "init_worker was not called"
    return [_WORKER.build(p) for p in batch]


def warm_worker() -> int:
    """Load every key once (a worker's first batches then sign at full speed); returns how many."""
    assert _WORKER is not None, "init_worker was not called"
    for code in _WORKER.keys:
        _WORKER._key(code)
    return len(_WORKER.keys)


class SigningPool:
    """Worker processes that build and sign (``spawn``: clean children, no event loop, no sockets). Start it
    early (``axis demo`` does while the axis boots) so that interpreter start-up and key loading are done
    before the preparation phase; close it with :meth:`close`."""

    def __init__(self, keys: Mapping[str, KeyPaths], *, sign: bool = True, workers: int = 1) -> None:
        self.keys = dict(keys)
        self.sign = sign
        self.workers = max(1, workers)
        self.executor = cf.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.keys, sign),
        )
        self._warm = [self.executor.submit(warm_worker) for _ in range(self.workers)]

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SigningPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
