"""The baseline of bench/verify_cli.py: a fresh process verifying every *.edxml/*.xml of DIR with bare signxml.

    python bench/signxml_verify_dir.py DIR CERT_PEM

``XMLVerifier().verify(data, x509_cert=cert)`` per file (the signature against the given certificate only), one
JSON line per file on stdout, exit 1 if any file fails — the shape of ``axis envelope verify --json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from signxml import XMLVerifier


def main() -> int:
    directory, cert_path = Path(sys.argv[1]), Path(sys.argv[2])
    cert = cert_path.read_text()
    failed = False
    out = sys.stdout
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in (".edxml", ".xml")):
        row = {"file": str(path), "ok": True, "reason": None}
        try:
            XMLVerifier().verify(path.read_bytes(), x509_cert=cert)
        except Exception as exc:  # a bench baseline: any failure is a failed file
            row.update(ok=False, reason=type(exc).__name__)
            failed = True
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
    out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
