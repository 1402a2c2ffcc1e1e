"""Big signed edXML documents, written quickly and with little memory (tests and bench/bigdoc.py).

A small document is signed per the profile as usual; its attachment's content is then replaced by ``size`` bytes of
base64 written chunk by chunk, the Reference's digest recomputed by streaming the document through the streaming
canonicalizer (:mod:`axis.core.streamverify`), and the SignedInfo signed again. The file is written twice over
(digest, then bytes): never held whole in memory.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from axis.core.pki import PrivateKey
from axis.core.signing import raw_signature, sign
from axis.core.streamverify import _parse
from tests.support.testing import make_edxml

_CONTENT = re.compile(rb"(<ContentTransferEncoded>)([^<]*)(</ContentTransferEncoded>)")
_DIGEST = re.compile(rb"(<ds:DigestValue>)([^<]*)(</ds:DigestValue>)")
_SIGVALUE = re.compile(rb"(<ds:SignatureValue>)([^<]*)(</ds:SignatureValue>)")
LINE = 76
BLOCK_LINES = 10_000  # ~770 KB of base64 per chunk


def _block(seed: int) -> bytes:
    raw = random.Random(seed).randbytes(LINE * 3 // 4 * BLOCK_LINES)
    b64 = base64.b64encode(raw)
    return b"\n".join(b64[i:i + LINE] for i in range(0, len(b64), LINE)) + b"\n"


def _parts(head: bytes, tail: bytes, size: int, block: bytes) -> Iterator[bytes]:
    yield head
    left = size
    while left >= len(block):
        yield block
        left -= len(block)
    lines = max(0, left // (LINE + 1))
    if lines:
        yield block[:lines * (LINE + 1)]
    yield b"AAAA"  # the content stays a whole number of base64 quanta
    yield tail


def write_big_document(path: Path, key: PrivateKey, cert: x509.Certificate, sender: str, recipients: Sequence[str],
                       size: int, *, number: int = 1, seed: int = 0) -> tuple[str, int]:
    """Write a document of about ``size`` bytes (one base64 attachment) signed with ``key`` and ``cert`` to
    ``path``; its (sha256, size)."""
    small = sign(make_edxml(sender, recipients, size=4000, number=number, seed=seed), key, cert)
    content = _CONTENT.search(small)
    assert content is not None
    head, tail = small[:content.start(2)], small[content.end(2):]
    block = _block(seed)
    target, _, _, _ = _parse(_parts(head, tail, size, block), max_bytes=1 << 40)
    digest = target.digest.digest("sha256")
    assert digest is not None
    head = _DIGEST.sub(lambda m: m.group(1) + base64.b64encode(digest) + m.group(3), head, count=1)
    # the SignedInfo as the streaming canonicalizer writes it, from the head alone (it is in the header)
    signed_info = _parse([head.replace(b"<ContentTransferEncoded>", b"<ContentTransferEncoded>AAAA") + tail],
                         max_bytes=1 << 40)[0].signed_info
    value = raw_signature(key, b"".join(signed_info))
    head = _SIGVALUE.sub(lambda m: m.group(1) + base64.b64encode(value) + m.group(3), head, count=1)
    h = hashlib.sha256()
    n = 0
    with open(path, "wb") as f:
        for part in _parts(head, tail, size, block):
            f.write(part)
            h.update(part)
            n += len(part)
    return h.hexdigest(), n
