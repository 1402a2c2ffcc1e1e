"""What the endpoint host processes of one machine have checked: a record per document's exact bytes, so that a
document is verified once per machine (one work directory), not once per host process.

With several host processes (``axis up`` starts two on two cores), nearly every document reaches a process
other than the one whose door checked it: with the seed's traffic shape the second full check (signature, chain,
signer, schema, model) was ~16 % of the hosts' CPU (bench/README.md). The processes of one work directory are
one trust domain: same operating-system user, same configuration and trust anchors, the same agencies' keys and
inbox stores, which any of them could write directly. A record one of them wrote after a full check therefore
tells another nothing it could not have done itself, and is as good as its own cache
(:class:`endpoints.checks.DeliveryChecks`): what the check decides is a function of the bytes and the policy,
except the certificate's validity window, the CRL and the key usage at this moment, which the reader checks
again at every use from the record's certificates.

Layout: ``<root>/<generation>/<bucket>/<sha256 hex>``, directories 0700, files 0600, where ``<root>``
(:func:`records_root`) is ``/dev/shm/axis-checked-<uid>-<hash of the work directory>``: memory, as the records are
short-lived and creating a file there costs ~17 µs of CPU where a disk-backed directory took 300–740 µs on the
reference machine (ext4) (``<work dir>/checked`` where there is no usable ``/dev/shm``). ``/dev/shm`` is shared by
every user, so the directory is used only if it is ours, a real directory (not a link) and closed to others; otherwise
there are no records (every document is checked in full).

- ``generation`` names the policy the check was made under (trust anchors, algorithms, size limit, this format):
  a process with another policy never reads another policy's records.
- ``bucket`` is the record's ten-minute slot; a reader looks in the current slot and the one before, so a record
  lives 10–20 minutes — the time a delivery takes to reach the other process is seconds. The writer that first
  writes into a new slot removes the slots before the previous one.
- A record is JSON: the signer's certificate path (base64 DER, signer first, without the anchor) and the
  message as the check read it, without attachments (the delivery stores the exact bytes, not the model).

Never in the way of delivery: a record that cannot be written, read or understood is a miss, and the document
is checked in full as before (logged once per process).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import stat
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.serialization import Encoding

from axis.config.workdir import CHECK_RECORDS_PREFIX, SHM, check_records_dir
from axis.core import envelope
from axis.core.reasons import Refusal
from axis.core.verify import CertFacts, Verifier

log = logging.getLogger("axis.endpoint")

#: the record format: a change of it is a new generation
FORMAT = b"axis-checked-1"
#: seconds of one bucket (records live one to two of them)
BUCKET_SECONDS = 600


def records_root(work_dir: Path, shm: Path = SHM) -> Path | None:
    """The records' directory for the host processes of ``work_dir`` (:func:`axis.config.workdir.check_records_dir`),
    created 0700; None when the place exists but is not safely ours (someone else's, a link, open to others)."""
    root = check_records_dir(work_dir, shm)
    try:
        root.mkdir(mode=0o700, parents=root.parent != shm, exist_ok=True)
        info = root.lstat()
    except OSError as exc:
        log.warning("no records of checked documents in %s (%s): documents are checked in full", root, exc)
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning("no records of checked documents: %s is not a directory of this user closed to others "
                    "(documents are checked in full)", root)
        return None
    return root


def generation(verifier: Verifier) -> str:
    """The name of the policy a check was made under: the trust anchors, the allowed algorithms, the size limit
    and the record format. CRLs and the clock are not in it: they are checked again at every use."""
    policy = verifier.policy
    digest = hashlib.sha256(FORMAT)
    for anchor in sorted(a.public_bytes(Encoding.DER) for a in policy.trust_anchors):
        digest.update(hashlib.sha256(anchor).digest())
    digest.update(orjson.dumps([sorted(policy.digest_algorithms), sorted(policy.signature_algorithms),
                                policy.max_bytes, policy.require_signature]))
    return digest.hexdigest()[:32]


class CheckedRecords:
    """The records of one work directory for one verifier's policy (see the module docstring)."""

    def __init__(self, root: Path, verifier: Verifier, *, clock: typing.Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self.root = root
        self.dir = root / generation(verifier)
        self._dir = str(self.dir)
        self.clock = clock
        self.hits = 0
        self._swept_bucket = -1
        self._warned = False
        self._certs: dict[tuple[Any, ...], list[str]] = {}

    # -- reading ----------------------------------------------------------------------------------------------
    def get(self, key: bytes) -> tuple[envelope.DocumentMessage, CertFacts] | None:
        """The message and certificate facts another process recorded for these bytes, or None. The caller still
        checks the moment-dependent part (:func:`axis.core.verify.check_time_revocation_usage`)."""
        name = key.hex()
        bucket = self._bucket()
        for slot in (bucket, bucket - 1):
            try:
                with open(f"{self._dir}/{slot}/{name}", "rb") as f:  # a str path: no Path objects per look-up
                    raw = f.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._warn("read", exc)
                return None
            found = self._decode(raw)
            if found is not None:
                self.hits += 1
            return found
        return None

    def _decode(self, raw: bytes) -> tuple[envelope.DocumentMessage, CertFacts] | None:
        try:
            record = orjson.loads(raw)
            certs = tuple(base64.b64decode(c, validate=True) for c in record["certs"])
            msg = revive(envelope.DocumentMessage, record["message"])
            facts = self.verifier.chain_facts(certs)
        except Refusal:  # the chain no longer holds under this policy: check in full, which says why
            return None
        except Exception:  # half-written (a writer in progress) or foreign: a miss, never an error
            return None
        return msg, facts

    # -- writing ----------------------------------------------------------------------------------------------
    def put(self, key: bytes, msg: envelope.DocumentMessage, facts: CertFacts) -> None:
        """Record a document that passed the full check (``msg`` without attachments)."""
        bucket = self._bucket()
        record = orjson.dumps({"certs": self._encoded(facts), "message": msg})
        try:
            if bucket != self._swept_bucket:
                self._sweep(bucket)
            fd = self._create(bucket, key.hex())
        except FileExistsError:  # recorded already (another process checked the same bytes)
            return
        except OSError as exc:
            self._warn("write", exc)
            return
        try:
            os.write(fd, record)
        except OSError as exc:
            self._warn("write", exc)
        finally:
            os.close(fd)

    def _create(self, bucket: int, name: str) -> int:
        """The new record's file, open for writing; its slot is made on the first miss (the root is never
        re-created here: only :func:`records_root` checks it)."""
        path = f"{self._dir}/{bucket}/{name}"  # str paths: no Path objects per record
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # a new slot (or the generation's directory) to make first
            self.dir.mkdir(mode=0o700, exist_ok=True)
            (self.dir / str(bucket)).mkdir(mode=0o700, exist_ok=True)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _encoded(self, facts: CertFacts) -> list[str]:
        """The signer's certificate path as the record holds it (base64 DER, without the anchor): the same few
        chains sign every document, so each is encoded once (``facts`` come from the verifier's own cache)."""
        certs = facts.path[:-1]
        encoded = self._certs.get(certs)
        if encoded is None:
            if len(self._certs) >= 4096:  # bounded: many signers, or a directory reloaded many times
                self._certs.clear()
            encoded = self._certs[certs] = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in certs]
        return encoded

    def _sweep(self, bucket: int) -> None:
        """Remove the slots before the previous one, other generations' directories past their life and, in shared
        memory, the records of this user's work directories that nobody has written to for three buckets (axis
        runs that ended: memory is not left behind)."""
        self._swept_bucket = bucket
        stale = self.clock() - 3 * BUCKET_SECONDS
        for gen in _listdir(self.root):
            if gen.name != self.dir.name:
                if _newest(gen) < stale + BUCKET_SECONDS:
                    shutil.rmtree(gen, ignore_errors=True)
                continue
            for slot in _listdir(gen):
                if not slot.name.isdigit() or int(slot.name) < bucket - 1:
                    shutil.rmtree(slot, ignore_errors=True)
        if self.root.name.startswith(CHECK_RECORDS_PREFIX):
            for other in _listdir(self.root.parent):
                if (other.name.startswith(f"{CHECK_RECORDS_PREFIX}{os.getuid()}-") and other != self.root
                        and max([_newest(other), *map(_newest, _listdir(other))]) < stale):
                    shutil.rmtree(other, ignore_errors=True)

    def _bucket(self) -> int:
        return int(self.clock() // BUCKET_SECONDS)

    def _warn(self, what: str, exc: OSError) -> None:
        if not self._warned:  # once per process: the documents are checked in full meanwhile, nothing is lost
            self._warned = True
            log.warning("the checked-documents records in %s cannot be %s (%s): documents are checked in full",
                        self.dir, "read" if what == "read" else "written", exc)


def _newest(path: Path) -> float:
    """The modification time of ``path`` (0 when it is gone, or is a link: never followed)."""
    try:
        info = path.lstat()
    except OSError:
        return 0.0
    return 0.0 if stat.S_ISLNK(info.st_mode) else info.st_mtime


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def revive(cls: type[Any], data: Any) -> Any:
    """A frozen dataclass of the envelope model back from its JSON form (what ``orjson.dumps`` made of it)."""
    return cls(**{name: data[name] if convert is None else convert(data[name])
                  for name, convert in _plan(cls) if name in data})


#: per dataclass: (field, how its JSON value becomes the field's value — None: as it is)
_PLANS: dict[type[Any], list[tuple[str, Callable[[Any], Any] | None]]] = {}


def _plan(cls: type[Any]) -> list[tuple[str, Callable[[Any], Any] | None]]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = _PLANS[cls] = [(f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls)]
    return plan


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return functools.partial(revive, hint)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])
        return tuple if item is None else lambda data: tuple(item(x) for x in data)
    if origin is types.UnionType or origin is typing.Union:  # X | None
        (kind,) = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _converter(kind)
        return None if inner is None else lambda data: None if data is None else inner(data)
    return None
