"""Verification throughput: the fast path against signxml, same run, same envelopes, one core.

    python bench/verify.py [--seconds 3] [--algorithm rsa|ec] [--json]

For a 10 KB and a 1 MB signed envelope, measures verifications per second of
- ``fast``: axis.core.verify.Verifier (full check: profile, digest, signature, chain, validity, CRL, signer),
- ``reference``: tests.support.verify_reference.ReferenceVerifier (same checks, signxml doing the XML-DSig work),
- ``signxml``: bare signxml ``XMLVerifier().verify(data, x509_cert=cert)`` (signature only: the baseline),
interleaved in short slices for a bounded time each (load from other processes hits all three alike),
and prints the ratios fast/signxml and fast/reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signxml import XMLVerifier

from tests.support.testing import make_edxml, make_pki
from tests.support.verify_reference import ReferenceVerifier

A, B = "000.00.00.G22", "000.00.00.H41"


def rates(fns: dict[str, Callable[[], object]], seconds: float, slice_s: float = 0.2,
          clock: Callable[[], float] = time.process_time) -> dict[str, float]:
    """Calls per second of each function, measured in interleaved slices so that load from other processes
    on the machine hits every contender alike (the ratios stay meaningful on a busy machine). The default
    clock is this process's CPU time: "per second of one core", even when other processes share the cores."""
    for fn in fns.values():
        fn()  # warm caches
    calls = dict.fromkeys(fns, 0)
    spent = dict.fromkeys(fns, 0.0)
    while min(spent.values()) < seconds:
        for name, fn in fns.items():
            n, start = 0, clock()
            deadline = start + slice_s
            while True:
                fn()
                n += 1
                now = clock()
                if now >= deadline:
                    break
            calls[name] += n
            spent[name] += now - start
    return {name: calls[name] / spent[name] for name in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--algorithm", choices=["rsa", "ec"], default="rsa")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU time (one core, robust to other load); wall: elapsed time")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(tmp, [A, B], algorithm=args.algorithm)
        fast = pki.verifier(max_bytes=4 * 1024 * 1024)
        reference = ReferenceVerifier(pki.policy(max_bytes=4 * 1024 * 1024))
        cert = pki.cert(A)
        rows = []
        for label, target in (("10 KB", 10 * 1024), ("1 MB", 1024 * 1024)):
            overhead = len(pki.sign(make_edxml(A, [B], size=target), A)) - len(make_edxml(A, [B], size=target))
            data = pki.sign(make_edxml(A, [B], size=target - overhead), A)
            assert fast.verify(data).signer == reference.verify(data).signer == A
            r = rates({"fast": lambda d=data: fast.verify(d), "reference": lambda d=data: reference.verify(d),
                       "signxml": lambda d=data: XMLVerifier().verify(d, x509_cert=cert)}, args.seconds,
                      clock=time.process_time if args.clock == "cpu" else time.perf_counter)
            r_fast, r_ref, r_sx = r["fast"], r["reference"], r["signxml"]
            rows.append({"envelope": label, "bytes": len(data), "algorithm": args.algorithm,
                         "fast_per_s": round(r_fast, 1), "reference_per_s": round(r_ref, 1),
                         "signxml_per_s": round(r_sx, 1), "fast_vs_signxml": round(r_fast / r_sx, 2),
                         "fast_vs_reference": round(r_fast / r_ref, 2)})

    if args.json:
        print(orjson.dumps({"benchmark": "verify", "clock": args.clock, "seconds_each": args.seconds,
                            "rows": rows}).decode())
        return
    header = f"{'envelope':<9}{'bytes':>9}  {'fast/s':>9}  {'reference/s':>12}  {'signxml/s':>10}  " \
             f"{'fast÷signxml':>12}  {'fast÷reference':>14}"
    print(f"verification throughput, {args.algorithm}, one process, {args.seconds:g} s {args.clock} time per cell")
    print(header)
    for r in rows:
        print(f"{r['envelope']:<9}{r['bytes']:>9}  {r['fast_per_s']:>9.0f}  {r['reference_per_s']:>12.0f}  "
              f"{r['signxml_per_s']:>10.0f}  {r['fast_vs_signxml']:>11.2f}x  {r['fast_vs_reference']:>13.2f}x")


if __name__ == "__main__":
    main()
