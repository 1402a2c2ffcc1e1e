"""``axis envelope verify FILE|DIR... --ca CA [--crl CRL] [--json] [--jobs N]`` (contract section 3).

What integrators run over a directory of received envelopes, so it is built to start fast and to scale:

- each file is parsed ONCE: the hardened parse of :class:`axis.core.verify.Verifier` hands its tree to the schema
  check (``check_tree``) before any signature check, so the reasons and their order are those of a separate
  validate-then-verify (a schema-invalid document is SCHEMA_INVALID whatever its signature);
- imports are lazy: :func:`axis.cli.main` hands ``axis envelope verify ARGS`` to :func:`run_standalone` without
  building the rest of the CLI, nor importing typer (its parameter handling costs ~0.1 s of CPU): the arguments
  are read with argparse, and what it does not take (``--help``, a usage error) goes to the whole application's
  Typer command, ``axis.cli.trust.verify_cmd``, so help and errors are worded as everywhere; rich is imported
  only for the table or an error;
- ``--jobs N`` (0: one per CPU) verifies in N worker processes; the results come back in the order of the files
  (the same order, output and exit status as ``--jobs 1``).

Exit status: 0 every file verified, 1 some file refused (its reason printed), 2 usage error (a missing or
unreadable file, an unreadable CA or CRL, a bad ``--jobs``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from axis.core.verify import Verifier

#: Above this many files the human output lists the refused files only, then the counts: a table of thousands
#: of "ok" lines helps nobody (``--json`` always has one line per file).
TABLE_ALL_ROWS_UP_TO = 200

#: Key of a row that reports a file that could not be read (a usage error, not a refusal); never printed.
_READ_ERROR = "_read_error"


def collect_files(paths: Sequence[Path]) -> list[str]:
    """The files to verify, by name: each FILE as given, each directory's ``*.edxml``/``*.xml`` files (not
    recursive, symbolic links followed), sorted by name. A path that does not exist is a usage error."""
    out: list[str] = []
    for p in paths:
        if p.is_dir():
            base = str(p)
            with os.scandir(p) as entries:  # no stat per file (d_type), unlike Path.is_file()
                names = sorted(e.name for e in entries
                               if os.path.splitext(e.name)[1].lower() in (".edxml", ".xml") and e.is_file())
            out.extend(os.path.join(base, name) for name in names)
        elif p.is_file():
            out.append(str(p))
        else:
            _usage_error(f"no such file or directory: {p}")
    return out


def check_envelope(verifier: Verifier, name: str, data: bytes) -> dict[str, Any]:
    """The verify result object of one file's bytes (no I/O): ``{"file", "ok", "reason", "detail", "signer"}``.

    One hardened parse; the edXML schema is checked on that tree first, then profile, signature, certificate
    and signer (:meth:`axis.core.verify.Verifier.verify`)."""
    from axis.core.reasons import Refusal
    from axis.core.schema import validate

    row: dict[str, Any] = {"file": name, "ok": True, "reason": None, "detail": "", "signer": None}
    try:
        row["signer"] = verifier.verify(data, check_tree=validate).signer
    except Refusal as refusal:
        row.update(ok=False, reason=refusal.reason.value, detail=refusal.detail)
    return row


def check_path(verifier: Verifier, name: str) -> dict[str, Any]:
    """:func:`check_envelope` of a file; a file that cannot be read gives a row with ``_READ_ERROR``."""
    try:
        with open(name, "rb", buffering=0) as f:  # unbuffered: one read of the whole file
            data = f.readall()
    except OSError as exc:
        return {"file": name, _READ_ERROR: f"cannot read {name}: {exc}"}
    return check_envelope(verifier, name, data)


def load_verifier(ca: Path, crl: Path | None) -> Verifier:
    from axis.core.verify import Verifier, VerifyPolicy

    return Verifier(VerifyPolicy.from_files(ca, crl))


# ---- worker processes -------------------------------------------------------------------------------------------

_worker_verifier: Verifier | None = None


def _init_worker(ca: Path, crl: Path | None) -> None:
    global _worker_verifier
    _worker_verifier = load_verifier(ca, crl)


def _check_chunk(names: list[str]) -> list[dict[str, Any]]:
    """In a worker: the rows of a chunk of files."""
    assert _worker_verifier is not None, "worker not initialized"
    verifier = _worker_verifier
    return [check_path(verifier, name) for name in names]


def chunk_size(files: int, jobs: int) -> int:
    """Files per task sent to a worker: big enough that the pipe costs little per file, small enough that the
    workers finish together (about 8 tasks per worker, at most 64 files each)."""
    return max(1, min(64, -(-files // (jobs * 8))))


def start_method() -> str:
    """``fork`` (the workers inherit the imported modules: no start-up) in a single-threaded process, as the CLI
    is; otherwise ``forkserver`` or ``spawn`` — forking a process with other threads can copy a lock another
    thread holds (a caller embedding this with threads of its own)."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def verify_paths(files: Sequence[str], ca: Path, crl: Path | None, jobs: int,
                 verifier: Verifier | None = None) -> Iterator[dict[str, Any]]:
    """The rows of ``files`` in their order, from ``jobs`` worker processes (or this one for ``jobs`` 1 or a
    single file). Workers are started by :func:`start_method`; each loads the CA/CRL itself.
    The workers are stopped when the caller stops early."""
    if jobs <= 1 or len(files) <= 1:
        verifier = verifier or load_verifier(ca, crl)
        for path in files:
            yield check_path(verifier, path)
        return
    import multiprocessing

    context = multiprocessing.get_context(start_method())
    jobs = min(jobs, len(files))
    size = chunk_size(len(files), jobs)
    chunks = [list(files[i:i + size]) for i in range(0, len(files), size)]
    with context.Pool(jobs, initializer=_init_worker, initargs=(ca, crl)) as pool:
        for rows in pool.imap(_check_chunk, chunks):
            yield from rows


# ---- the command (its Typer face is axis.cli.trust.verify_cmd) ---------------------------------------------------


def _usage_error(message: str) -> NoReturn:
    """As :func:`axis.cli._common.usage_error` (exit 2), without importing typer."""
    from axis.cli._common import EXIT_USAGE, err_console, safe

    err_console.print(f"[bold red]error:[/] {safe(message, lines=True)}")
    raise SystemExit(EXIT_USAGE)


def run_verify(files: Sequence[Path], ca: Path, crl: Path | None, as_json: bool, jobs: int) -> int:
    """``axis envelope verify``: print the results and return the exit status (0, or 1 if a file is refused);
    usage errors exit 2 (SystemExit)."""
    if jobs < 0:
        _usage_error(f"--jobs must be 0 (one per CPU) or more, not {jobs}")
    n_jobs = jobs or (os.cpu_count() or 1)
    try:
        verifier = load_verifier(ca, crl)  # here, not in the workers first: a bad CA/CRL is one usage error
    except (OSError, ValueError) as exc:
        _usage_error(f"cannot load the trust anchors / CRL: {exc}")
    paths = collect_files(files)
    rows: list[dict[str, Any]] = []
    out = sys.stdout
    if as_json:
        import orjson
    for row in verify_paths(paths, ca, crl, n_jobs, verifier):
        if _READ_ERROR in row:
            out.flush()
            _usage_error(row[_READ_ERROR])
        rows.append(row)
        if as_json:
            out.write(orjson.dumps(row).decode() + "\n")
    out.flush()
    if not as_json:
        _print_table(rows)
    return 1 if any(not r["ok"] for r in rows) else 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from axis.cli._common import console, safe

    refused = [r for r in rows if not r["ok"]]
    shown = rows if len(rows) <= TABLE_ALL_ROWS_UP_TO else refused
    if shown:
        table = Table("file", "result", "signer / detail")
        for row in shown:
            result = "[green]ok[/]" if row["ok"] else f"[red]{safe(row['reason'])}[/]"
            table.add_row(safe(row["file"]), result, safe(row["signer"] if row["ok"] else row["detail"]))
        console.print(table)
    if len(rows) > TABLE_ALL_ROWS_UP_TO or refused:
        console.print(f"{len(rows) - len(refused)} verified, {len(refused)} refused", highlight=False)


class _NotMine(Exception):
    """The arguments are for the Typer command (help, or a usage error it words)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotMine(message)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    if any(a in ("--help", "-h", "--") for a in argv):
        raise _NotMine("help")
    parser = _Parser(prog="axis envelope verify", add_help=False, allow_abbrev=False)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--crl", type=Path, default=None)
    parser.add_argument("--json", dest="as_json", action="store_true")
    parser.add_argument("--jobs", "-j", type=int, default=1)
    return parser.parse_intermixed_args(list(argv))


def run_standalone(argv: Sequence[str]) -> bool:
    """``axis envelope verify ARGV`` as a whole process, without importing the rest of the CLI (nor typer): exits
    with the command's status. Returns False, having done nothing, for what the Typer command must answer
    (``--help``, arguments argparse does not take): the caller then runs the whole application."""
    try:
        args = _parse(argv)
    except _NotMine:
        return False
    raise SystemExit(run_verify(args.files, args.ca, args.crl, args.as_json, args.jobs))
