"""Whole-process verification: ``axis envelope verify DIR`` against a signxml script over the same files.

    python bench/verify_cli.py [--envelopes 2000] [--rounds 3] [--jobs 2] [--algorithm rsa|ec] [--json]

What an integrator sees: a fresh process verifying a directory of signed ~10 KB envelopes (RSA-2048 by default),
start-up included. Contenders, run in interleaved rounds in the same run (the median round is reported):

- ``axis``: ``python -m axis envelope verify DIR --ca CA --crl CRL --json`` (XML safety, schema, profile,
  signature, chain, validity, CRL, signer; one JSON line per file);
- ``axis --jobs N``: the same with N worker processes;
- ``signxml`` (the baseline): ``bench/signxml_verify_dir.py DIR CERT`` — a fresh process doing bare signxml
  ``XMLVerifier().verify(data, x509_cert=cert)`` on each file (the signature only: no schema, no chain, no CRL,
  no signer check) and printing one JSON line per file;
- and both on ONE file: the start-up an integrator waits for before the first result.

Reports wall time, the processes' CPU time (user + system of the process and its workers) and CPU per document
(start-up included, and with the one-file run subtracted), and the ratios signxml ÷ axis. CPU time hardly moves
with the load of other processes; wall time does, and the ``--jobs`` figure needs idle cores to mean anything.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.testing import make_edxml, make_pki  # noqa: E402

A, B = "000.00.00.G22", "000.00.00.H41"
BASELINE = Path(__file__).resolve().parent / "signxml_verify_dir.py"


def write_corpus(directory: Path, pki: Any, count: int, size: int = 10 * 1024) -> int:
    """``count`` envelopes signed by A of ~``size`` bytes each (distinct documents); returns the mean size."""
    overhead = len(pki.sign(make_edxml(A, [B], size=size), A)) - len(make_edxml(A, [B], size=size))
    total = 0
    for i in range(count):
        data = pki.sign(make_edxml(A, [B], size=size - overhead, number=i + 1, seed=i), A)
        (directory / f"doc-{i:06d}.edxml").write_bytes(data)
        total += len(data)
    return total // count


def timed(cmd: list[str], expect_lines: int) -> dict[str, float]:
    """Wall and CPU seconds of one process (and the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != expect_lines or not all(b'"ok":true' in line for line in lines):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envelopes", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the parallel axis run")
    ap.add_argument("--algorithm", choices=["rsa", "ec"], default="rsa")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="axis-bench-verify-cli-") as tmp:
        pki = make_pki(Path(tmp) / "pki", [A, B], algorithm=args.algorithm)
        many, one = Path(tmp) / "many", Path(tmp) / "one"
        many.mkdir()
        one.mkdir()
        size = write_corpus(many, pki, args.envelopes)
        (one / "doc.edxml").write_bytes(next(many.iterdir()).read_bytes())
        py = sys.executable
        trust = ["--ca", str(pki.ca_pem), "--crl", str(pki.crl_pem), "--json"]
        cert = str(pki.cert_path(A))
        contenders: dict[str, tuple[list[str], int]] = {
            "signxml": ([py, str(BASELINE), str(many), cert], args.envelopes),
            "axis": ([py, "-m", "axis", "envelope", "verify", str(many), *trust], args.envelopes),
            "axis_jobs": ([py, "-m", "axis", "envelope", "verify", str(many), *trust, "--jobs", str(args.jobs)],
                          args.envelopes),
            "signxml_one": ([py, str(BASELINE), str(one), cert], 1),
            "axis_one": ([py, "-m", "axis", "envelope", "verify", str(one), *trust], 1),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
        for cmd, n in contenders.values():  # warm the page cache and the .pyc files
            timed(cmd, n)
        for _ in range(args.rounds):
            for name, (cmd, n) in contenders.items():
                runs[name].append(timed(cmd, n))

    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")} for name, rs in runs.items()}
    n = args.envelopes

    def per_doc_ms(name: str, one_name: str) -> tuple[float, float]:
        """CPU ms per document with start-up, and without (the one-file run's CPU subtracted)."""
        return med[name]["cpu_s"] / n * 1e3, (med[name]["cpu_s"] - med[one_name]["cpu_s"]) / max(1, n - 1) * 1e3

    figures = {
        "envelopes": n, "bytes_each": size, "algorithm": args.algorithm, "rounds": args.rounds, "jobs": args.jobs,
        "median": {k: {m: round(v, 4) for m, v in d.items()} for k, d in med.items()},
        "wall_ratio_serial": round(med["signxml"]["wall_s"] / med["axis"]["wall_s"], 2),
        "wall_ratio_jobs": round(med["signxml"]["wall_s"] / med["axis_jobs"]["wall_s"], 2),
        "cpu_ratio_serial": round(med["signxml"]["cpu_s"] / med["axis"]["cpu_s"], 2),
        "cpu_ratio_jobs": round(med["signxml"]["cpu_s"] / med["axis_jobs"]["cpu_s"], 2),
        "first_file_wall_ratio": round(med["signxml_one"]["wall_s"] / med["axis_one"]["wall_s"], 2),
        "cpu_ms_per_doc": {
            "axis": [round(x, 3) for x in per_doc_ms("axis", "axis_one")],
            "axis_jobs": [round(x, 3) for x in per_doc_ms("axis_jobs", "axis_one")],
            "signxml": [round(x, 3) for x in per_doc_ms("signxml", "signxml_one")],
        },
        "raw": runs,
    }
    if args.json:
        print(orjson.dumps({"benchmark": "verify_cli", **figures}).decode())
        return
    print(f"whole-process verification of {n} × {size} B envelopes ({args.algorithm}), median of {args.rounds} "
          "interleaved rounds")
    print(f"{'contender':<22}{'wall s':>9}{'CPU s':>9}{'CPU ms/doc':>12}{'(minus start-up)':>18}")
    for name, one_name, label in (("signxml", "signxml_one", "signxml script"), ("axis", "axis_one", "axis"),
                                  ("axis_jobs", "axis_one", f"axis --jobs {args.jobs}")):
        with_start, without = per_doc_ms(name, one_name)
        print(f"{label:<22}{med[name]['wall_s']:>9.3f}{med[name]['cpu_s']:>9.3f}{with_start:>12.3f}{without:>18.3f}")
    for name, label in (("signxml_one", "signxml, one file"), ("axis_one", "axis, one file")):
        print(f"{label:<22}{med[name]['wall_s']:>9.3f}{med[name]['cpu_s']:>9.3f}")
    print(f"signxml ÷ axis: wall {figures['wall_ratio_serial']}× serial, {figures['wall_ratio_jobs']}× "
          f"--jobs {args.jobs}; CPU {figures['cpu_ratio_serial']}× serial, {figures['cpu_ratio_jobs']}× --jobs; "
          f"first file (wall) {figures['first_file_wall_ratio']}×")


if __name__ == "__main__":
    main()
