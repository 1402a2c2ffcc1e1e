"""The encryption of axis backups (``axis backup``): a passphrase-keyed, chunked, authenticated stream — pure.

File layout::

    b"AXISBAK1" | u32 header length | header JSON | chunk* where chunk = u32 length | AES-256-GCM ciphertext

The header names the key derivation (scrypt, its salt and cost), the chunk size, a random 7-byte nonce prefix and
a key-check value (HMAC-SHA256 of a fixed label under the derived key: a wrong passphrase is told apart from a
damaged file). Chunk ``i`` is encrypted with nonce ``prefix | i (4 bytes) | last flag (1 byte)`` and the header
as associated data (the STREAM construction): a changed, removed, reordered, duplicated or appended chunk, a
truncated file or an altered header fails authentication, and the reader refuses the backup
(:class:`BackupCryptoError`). Everything in a backup is encrypted, not only the keys: inboxes hold the documents.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Any, BinaryIO, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"AXISBAK1"
CHUNK = 1 << 20
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
MAX_HEADER = 4096
_CHECK_LABEL = b"axis-backup-key-check-v1"


class BackupCryptoError(ValueError):
    """The backup cannot be opened: ``wrong_passphrase`` tells a wrong passphrase from a damaged/altered file."""

    def __init__(self, detail: str, *, wrong_passphrase: bool = False) -> None:
        super().__init__(detail)
        self.wrong_passphrase = wrong_passphrase


class _Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


def derive_key(passphrase: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    if not passphrase:
        raise BackupCryptoError("an empty passphrase")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _check_value(key: bytes) -> str:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class SealingWriter:
    """A binary file-like sink: what is written is encrypted chunk by chunk into ``out``; :meth:`close` writes
    the last chunk (always, even when empty) and must be called for the backup to be readable."""

    def __init__(self, out: _Writable, passphrase: str, *, chunk: int = CHUNK, n: int = SCRYPT_N) -> None:
        salt, self._prefix = os.urandom(16), os.urandom(7)
        self._key = derive_key(passphrase, salt, n)
        self._aead = AESGCM(self._key)
        self._header = orjson.dumps({"v": 1, "kdf": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P,
                                     "salt": base64.b64encode(salt).decode(), "chunk": chunk,
                                     "nonce": base64.b64encode(self._prefix).decode(),
                                     "check": _check_value(self._key)}, option=orjson.OPT_SORT_KEYS)
        self._out = out
        self._chunk = chunk
        self._buf = bytearray()
        self._index = 0
        self._closed = False
        out.write(MAGIC + struct.pack(">I", len(self._header)) + self._header)

    def _emit(self, data: bytes, last: bool) -> None:
        if self._index >= 0xFFFFFFFF:
            raise BackupCryptoError("the backup is too large (2^32 chunks)")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), data, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed SealingWriter")
        self._buf += data
        while len(self._buf) > self._chunk:  # keep at least one byte back: the last chunk is never empty-by-split
            self._emit(bytes(self._buf[:self._chunk]), False)
            del self._buf[:self._chunk]
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(bytes(self._buf), True)
            self._buf.clear()


class OpeningReader:
    """A binary file-like source over a sealed backup: reads decrypt and authenticate chunk by chunk. Raises
    :class:`BackupCryptoError` on a wrong passphrase, or at the first chunk that fails (altered, truncated)."""

    def __init__(self, raw: BinaryIO, passphrase: str) -> None:
        self._raw = raw
        head = raw.read(len(MAGIC) + 4)
        if len(head) < len(MAGIC) + 4 or head[:len(MAGIC)] != MAGIC:
            raise BackupCryptoError("not an axis backup (no AXISBAK1 header)")
        (length,) = struct.unpack(">I", head[len(MAGIC):])
        if length > MAX_HEADER:
            raise BackupCryptoError("a damaged backup header")
        self._header = raw.read(length)
        try:
            h = orjson.loads(self._header)
            salt, prefix = base64.b64decode(h["salt"]), base64.b64decode(h["nonce"])
            n, r, p, self._chunk = int(h["n"]), int(h["r"]), int(h["p"]), int(h["chunk"])
            check = str(h["check"])
            if h.get("v") != 1 or h.get("kdf") != "scrypt" or len(prefix) != 7 or not 1 <= n <= 1 << 20 \
                    or r > 64 or p > 16:
                raise ValueError("unsupported parameters")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BackupCryptoError(f"a damaged backup header ({exc})") from None
        self._key = derive_key(passphrase, salt, n, r, p)
        if not hmac.compare_digest(_check_value(self._key), check):
            raise BackupCryptoError("wrong passphrase (or the backup's header was altered)", wrong_passphrase=True)
        self._aead = AESGCM(self._key)
        self._prefix = prefix
        self._index = 0
        self._buf = b""
        self._done = False

    def _next(self) -> bytes:
        head = self._raw.read(4)
        if len(head) < 4:
            raise BackupCryptoError(f"the backup is truncated (chunk {self._index} missing)")
        (length,) = struct.unpack(">I", head)
        if length > self._chunk + 16:
            raise BackupCryptoError(f"the backup was altered or damaged (chunk {self._index} length)")
        sealed = self._raw.read(length)
        if len(sealed) < length:
            raise BackupCryptoError(f"the backup is truncated (in chunk {self._index})")
        for last in (False, True):
            try:
                data = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed, self._header)
            except InvalidTag:
                continue
            self._index += 1
            if last:
                self._done = True
                if self._raw.read(1):
                    raise BackupCryptoError("the backup was altered (data after its last chunk)")
            return data
        raise BackupCryptoError(f"the backup was altered or damaged (chunk {self._index} does not authenticate)")

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buf) < size) and not self._done:
            self._buf += self._next()
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out
