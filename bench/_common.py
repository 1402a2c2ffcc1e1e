"""Shared benchmark plumbing: results and tables, machine facts, throwaway vhosts, the cached signed corpus.

Nothing here is timed. Benchmarks are scripts (``python bench/run.py``), never timed tests: every figure is
reported beside a baseline measured in the same run on the same machine, and the ratio is what travels.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first; the package lives one level up
    sys.path.insert(0, str(ROOT))

RABBIT_HOST = os.environ.get("AXIS_BENCH_RABBIT_HOST", "127.0.0.1")
RABBIT_MGMT = os.environ.get("AXIS_BENCH_RABBIT_MGMT", f"http://{RABBIT_HOST}:15672")
RABBIT_AUTH = ("guest", "guest")
CACHE_DIR = Path(os.environ.get("AXIS_BENCH_CACHE", Path(tempfile.gettempdir()) / "axis-bench-cache"))

#: Header the pre-fill puts on each submission: the server ids the envelope fans out to. Only the relay
#: reads it (it must not parse); the router ignores it and routes from the verified bytes.
H_TARGETS = "x-bench-targets"
#: Header the pre-fill puts on each submission for the relay (bench/relay.py), which must not parse: JSON with the
#: sender, its server, the document id, the sha256 of the bytes and ``targets`` (server id → recipient codes).
H_META = "x-bench-meta"


# -- results -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One figure of the table: ``measured`` against ``baseline`` (same run), the target and whether it is met."""

    figure: str
    measured: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None
    ratio: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.measured is not None and self.baseline:
            self.ratio = self.measured / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(figure: str, unit: str, target: str, why: str) -> Result:
    """A figure that could not be measured in this run (the table says why; ``met`` stays None)."""
    return Result(figure, None, unit, target=target, notes=f"not measured: {why}")


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return f"{s} {unit}".strip()


def table(results: Sequence[Result]) -> str:
    """A Markdown table: figure, measured, baseline, ratio, target, met?"""
    rows = [("figure", "measured", "baseline", "ratio", "target", "met?")]
    for r in results:
        base = f"{_fmt(r.baseline, r.unit)} ({r.baseline_label})" if r.baseline is not None else "—"
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        rows.append((r.figure, _fmt(r.measured, r.unit), base, _fmt(r.ratio), r.target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures: cores, CPU, memory, broker and Python versions, date."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    rabbit = erlang = None
    with contextlib.suppress(Exception):
        ov = httpx.get(f"{RABBIT_MGMT}/api/overview", auth=RABBIT_AUTH, timeout=5).json()
        rabbit, erlang = ov.get("rabbitmq_version"), ov.get("erlang_version")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "memory_gb": mem_gb,
        "rabbitmq": rabbit,
        "erlang": erlang,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def door_check(config: Any) -> Any:
    """What a door runs on a signed submission, without the caches around it (:func:`endpoints.checks.full_check`
    with the axis's CA)."""
    import functools

    from axis.config.verifier import make_verifier
    from endpoints.checks import full_check

    return functools.partial(full_check, make_verifier(config))


def _probe(config_path: str, document: bytes, interval: float, per_sample: int, stop: Any, out: Any) -> None:
    """The speed probe's process (:class:`SpeedProbe`): every ``interval`` s, the CPU time of ``per_sample`` door
    checks; the samples (µs per check) go to ``out`` once ``stop`` is set."""
    from axis.config import load_config

    check = door_check(load_config(config_path))
    check(document)  # imports, caches
    out.send("ready")
    samples: list[float] = []
    spent = 0.0
    while not stop.wait(interval) or not samples:  # a window shorter than the interval still gets its sample
        t0 = time.process_time()
        for _ in range(per_sample):
            check(document)
        took = time.process_time() - t0
        spent += took
        samples.append(1e6 * took / per_sample)
    out.send((samples, spent))


class SpeedProbe:
    """The machine's speed during a measurement, in the axis's own currency: µs of CPU for one door check
    (:func:`door_check`: hardened parse, signature and chain, schema, model — interpreter, lxml and OpenSSL work in
    about the axis's own mix), sampled in a process of its own every ``interval`` s (``per_sample`` checks: 1–2 %
    of one core) while the axis runs.

    Why: on a shared VM the CPU time of the same work is not constant. On session 11's machine one door check took
    414–1,250 µs within ten seconds with nothing else running, and one commit measured 2.9–4.4 ms of CPU per
    document within an hour (session 10), 3.9–5.9 the next day. CPU per document divided by the median check of
    the same window — the axis's cost counted in door checks — keeps what the code costs and divides out most of
    how fast the machine was meanwhile (three runs of one commit: 3.94, 4.14 and 5.12 ms; 4.78, 4.81 and 5.17
    checks). The probe's checks start cache-cold after each pause, so its level depends on ``interval`` and
    ``per_sample``: compare the figure only with itself, measured the same way.

        with SpeedProbe(config_path, document) as probe:
            ...  # the measured window
        probe.median_us, probe.spread, probe.cpu_seconds
    """

    def __init__(self, config_path: str | Path, document: bytes, *, interval: float = 0.25,
                 per_sample: int = 4) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # the caller runs threads and an event loop: no fork
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_probe, daemon=True, name="axis-bench-speed-probe",
                                        args=(str(config_path), document, interval, per_sample, self._stop, send))
        self.samples: list[float] = []
        #: the probe's CPU time while sampling (its start-up not included): the harness's own cost
        self.cpu_seconds = 0.0

    def __enter__(self) -> SpeedProbe:
        self._process.start()
        if not self._receive.poll(60) or self._receive.recv() != "ready":
            self._process.kill()
            raise RuntimeError("the speed probe did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._receive.poll(30):
            self.samples, self.cpu_seconds = self._receive.recv()
        self._process.join(10)

    @property
    def median_us(self) -> float | None:
        """µs of CPU per door check during the window (the median sample), or None without samples."""
        import statistics

        return statistics.median(self.samples) if self.samples else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """The 10th and 90th percentiles of the samples (µs): how much the machine's speed moved meanwhile."""
        import statistics

        if len(self.samples) < 2:
            return None
        deciles = statistics.quantiles(self.samples, n=10)
        return deciles[0], deciles[-1]


def beam_pid() -> int | None:
    """The RabbitMQ node's process (``beam.smp``) on this machine, or None."""
    import subprocess

    try:
        # the process named beam.smp (-x), not any command line that mentions it (-f: a shell, a grep)
        return int(subprocess.check_output(["pgrep", "-x", "beam.smp"], text=True).split()[0])
    except (subprocess.CalledProcessError, IndexError, FileNotFoundError):
        return None


# -- a throwaway vhost ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def temp_vhost(prefix: str = "axis-bench") -> Iterator[str]:
    """A fresh RabbitMQ vhost (never the default one) for one benchmark; yields its AMQP URL, deletes it after."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=RABBIT_MGMT, auth=RABBIT_AUTH, timeout=60) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(f"/api/permissions/{vhost}/guest",
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        try:
            yield f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
        finally:
            http.delete(f"/api/vhosts/{vhost}")


@contextlib.contextmanager
def temp_pg_database(prefix: str = "axis_bench", base: str = "postgresql://postgres@127.0.0.1:5432"
                     ) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark (on ``base``'s server); yields its URL, drops it after."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def broker_reachable() -> bool:
    try:
        httpx.get(f"{RABBIT_MGMT}/api/overview", auth=RABBIT_AUTH, timeout=3).raise_for_status()
        return True
    except Exception:
        return False


# -- the signed corpus ---------------------------------------------------------------------------------------

#: The layout every drain benchmark routes through: shared servers, each with a few agencies; the first agency of
#: each server sends (it has a certificate), the others receive.
SERVERS = 8
AGENCIES_PER_SERVER = 10


def server_id(j: int) -> str:
    return f"s{j:02d}"


def agency_code(server: int, k: int) -> str:
    return f"000.00.{server:02d}.H{10 + k:02d}"


def senders() -> list[str]:
    return [agency_code(j, 0) for j in range(SERVERS)]


def directory_records() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(servers ``(id, kind)``, agencies ``(code, name, server id)``) of the benchmark layout."""
    servers = [(server_id(j), "shared") for j in range(SERVERS)]
    agencies = [(agency_code(j, k), f"Agency {j}.{k}", server_id(j))
                for j in range(SERVERS) for k in range(AGENCIES_PER_SERVER)]
    return servers, agencies


def plan(i: int) -> tuple[str, list[str], list[str]]:
    """(sender, recipients, recipient server ids) of envelope ``i``: 21 in 25 go to 3 servers, 4 in 25 to 2
    (mean fan-out 71/25 = 2.84), every recipient on a different server than the others and the sender."""
    n = 3 if i % 25 < 21 else 2
    src = i % SERVERS
    srv = [(src + 1 + m) % SERVERS for m in range(n)]
    k = 1 + (i // SERVERS) % (AGENCIES_PER_SERVER - 1)
    return agency_code(src, 0), [agency_code(j, k) for j in srv], [server_id(j) for j in srv]


FANOUT = 71 / 25


@dataclass(frozen=True)
class Corpus:
    """Signed envelopes cached on disk: ``records()`` yields ``(sender server id, target server ids, bytes)``."""

    dir: Path
    count: int
    size: int
    algorithm: str

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def ca_pem(self) -> Path:
        from axis.core.pki import CertificateAuthority

        return CertificateAuthority(self.pki_dir).ca_path

    @property
    def crl_pem(self) -> Path:
        from axis.core.pki import CertificateAuthority

        return CertificateAuthority(self.pki_dir).crl_path

    @property
    def data_file(self) -> Path:
        return self.dir / "envelopes.bin"

    def records(self, limit: int | None = None) -> Iterator[tuple[str, list[str], bytes]]:
        n = self.count if limit is None else min(limit, self.count)
        with self.data_file.open("rb") as f:
            for i in range(n):
                (length,) = struct.unpack(">I", f.read(4))
                body = f.read(length)
                yield server_id(i % SERVERS), plan(i)[2], body

    def mean_size(self) -> float:
        total = 0
        with self.data_file.open("rb") as f:
            for _ in range(self.count):
                (length,) = struct.unpack(">I", f.read(4))
                total += length
                f.seek(length, os.SEEK_CUR)
        return total / self.count


def _sign_chunk(args: tuple[str, int, int, int]) -> list[bytes]:
    pki_dir, start, stop, unsigned_size = args
    from tests.support.testing import make_edxml

    pki = _load_pki(Path(pki_dir))
    out = []
    for i in range(start, stop):
        sender, recipients, _ = plan(i)
        out.append(pki.sign(make_edxml(sender, recipients, size=unsigned_size, number=i + 1, seed=i), sender))
    return out


def _load_pki(pki_dir: Path) -> Any:
    """Re-open the cached test PKI (the ``axis pki`` layout ``tests.support.testing.make_pki`` wrote)."""
    from axis.core import pki as pkimod
    from tests.support.testing import TestPKI

    ca = pkimod.CertificateAuthority(pki_dir)
    meta = json.loads((pki_dir / "bench.json").read_text())
    t = TestPKI(dir=pki_dir, ca=ca, algorithm=meta["algorithm"], codes=meta["codes"])
    for code in meta["codes"]:
        t._keys[code] = pkimod.load_key((ca.agency_dir(code) / "key.pem").read_bytes())
        t._certs[code] = pkimod.load_certs((ca.agency_dir(code) / "cert.pem").read_bytes())[0]
    return t


def corpus(count: int, *, size: int = 10_240, algorithm: str = "rsa", workers: int | None = None,
           log: Any = print) -> Corpus:
    """The cached corpus of ``count`` signed envelopes of about ``size`` bytes (built once, reused after).

    Signing is the slow part (RSA-2048 about 600/s per core), so the corpus is kept in ``CACHE_DIR`` and a
    bigger cache serves a smaller request. Certificates are re-issued when the cache is older than 20 days.
    """
    key = hashlib.sha256(f"v1|{size}|{algorithm}|{SERVERS}|{AGENCIES_PER_SERVER}".encode()).hexdigest()[:12]
    d = CACHE_DIR / f"corpus-{algorithm}-{size}-{key}"
    meta_path = d / "corpus.json"
    have = 0
    if meta_path.is_file() and (d / "pki" / "bench.json").is_file():
        meta = json.loads(meta_path.read_text())
        if time.time() - meta["created"] < 20 * 86400:
            have = meta["count"]
    from axis.core import pki as pkimod
    from tests.support.testing import make_edxml, make_pki

    t0 = time.perf_counter()
    pki_dir = d / "pki"
    if have == 0:  # start over: new PKI, new envelopes
        import shutil

        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        codes = senders()
        pki = make_pki(pki_dir, codes, algorithm)  # type: ignore[arg-type]
        (pki_dir / "bench.json").write_text(json.dumps({"algorithm": algorithm, "codes": codes}))
        meta = {"count": 0, "created": time.time()}
    else:
        pkimod.CertificateAuthority(pki_dir).write_crl()  # the CRL lives a week, the certificates a year
        if have >= count:
            return Corpus(d, count, size, algorithm)
        pki = _load_pki(pki_dir)
    # calibrate: the signature and certificate add a constant; aim the signed size at `size`
    s0, r0, _ = plan(0)
    probe = pki.sign(make_edxml(s0, r0, size=size, number=1), s0)
    unsigned_size = max(1000, size - (len(probe) - size))
    workers = workers or os.cpu_count() or 1
    chunk = 500
    jobs = [(str(pki_dir), a, min(a + chunk, count), unsigned_size) for a in range(have, count, chunk)]
    log(f"signing envelopes {have}..{count} ({algorithm}, ~{size} B) with {workers} processes into {d} …")
    with (d / "envelopes.bin").open("ab") as f, ProcessPoolExecutor(workers) as pool:
        for bodies in pool.map(_sign_chunk, jobs):
            for b in bodies:
                f.write(struct.pack(">I", len(b)))
                f.write(b)
    meta.update(count=count, size=size, algorithm=algorithm)
    meta_path.write_text(json.dumps(meta))
    log(f"signed {count - have} envelopes in {time.perf_counter() - t0:.1f} s")
    return Corpus(d, count, size, algorithm)


def router_config_dict(c: Corpus, amqp_url: str, work_dir: Path, *, stats_url: str | None = None) -> dict[str, Any]:
    """A config.yaml-shaped mapping for the router over the benchmark layout (axis.config.config_from_dict)."""
    servers, agencies = directory_records()
    return {
        "amqp_url": amqp_url,
        "stats_url": stats_url or f"sqlite+aiosqlite:///{work_dir / 'stats.db'}",
        "pki": {"ca": str(c.ca_pem), "crl": str(c.crl_pem)},
        "servers": [{"id": sid, "kind": kind} for sid, kind in servers],
        "agencies": [{"code": code, "name": name, "server": sid} for code, name, sid in agencies],
    }


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")
