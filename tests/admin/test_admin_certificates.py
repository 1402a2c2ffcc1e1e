"""Certificate expiry in the admin app (axis.admin.certificates) over a real work directory made by
generate_workdir: the gauges on /metrics and GET /admin/certificates, with one agency's certificate replaced by one
that expires in 5 days, one revoked, and the files changed while the app runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from axis.admin.app import create_app
from axis.admin.certificates import CertificateWatch, ScanState, Watched, scan, watched_files
from axis.config import generate_workdir, load_config
from axis.core import pki

G22, G01, G03 = "000.00.00.G22", "000.00.00.G01", "000.00.00.G03"


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return generate_workdir(tmp_path / "w", [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGD", "sh")],
                            [("d1", "dedicated"), ("sh", "shared")], base_port=18701)


def short_lived(pki_dir: Path, code: str, days_left: float) -> None:
    """Replace the agency's signing certificate by one that ends ``days_left`` days from now."""
    ca = pki.CertificateAuthority(pki_dir)
    key = pki.load_key((pki_dir / "agencies" / code / "key.pem").read_bytes())
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_left - 90)
    cert = pki.issue_cert(ca.key, ca.cert, code, key.public_key(), not_before=start, days=90)
    (pki_dir / "agencies" / code / "cert.pem").write_bytes(pki.cert_pem(cert))


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_watched_files_cover_every_kind(workdir: tuple[Path, dict[str, Any]]) -> None:
    path, _ = workdir
    files = watched_files(load_config(path))
    kinds = sorted({(w.kind, w.agency) for w in files})
    assert kinds == sorted([("ca", ""), ("crl", ""), ("log", ""), ("tls-server", ""),
                            *((k, c) for c in (G22, G01, G03) for k in ("agency", "tls-client"))])
    assert all(Path(w.path).is_file() for w in files)


def test_metrics_and_report(workdir: tuple[Path, dict[str, Any]]) -> None:
    path, conn = workdir
    pki_dir = path.parent / "pki"
    short_lived(pki_dir, G01, 5)
    pki.CertificateAuthority(pki_dir).revoke(G03)  # revoked: nobody renews it, not watched
    app = create_app(load_config(path))
    bearer = {"Authorization": f"Bearer {conn['admin']['token']}"}
    with TestClient(app) as client:
        assert client.get("/admin/certificates").status_code == 401
        report = client.get("/admin/certificates", headers=bearer).json()
        assert report["errors"] == [] and report["warn_days"] == 30
        items = report["items"]
        assert (items[0]["kind"], items[0]["agency"], items[0]["status"]) == ("agency", G01, "warning")
        assert 4.9 < items[0]["days_left"] <= 5.0
        assert items[1]["kind"] == "crl" and items[1]["status"] == "ok"  # 7 days: warns only under 2
        assert ("agency", G03) not in {(i["kind"], i["agency"]) for i in items}
        assert report["counts"] == {"ok": len(items) - 1, "warning": 1, "expired": 0}
        due = client.get("/admin/certificates", params={"due": "true"}, headers=bearer).json()
        assert [(i["kind"], i["agency"]) for i in due["items"]] == [("agency", G01)]
        page = client.get("/admin/certificates", params={"limit": 2, "offset": 1}, headers=bearer).json()
        assert page["items"] == items[1:3] and page["next_offset"] == 3
        bad = client.get("/admin/certificates", params={"limit": 0}, headers=bearer)
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"

        g = gauges(client.get("/metrics", headers=bearer).text)
        assert 4.9 < g[("axis_certificate_days_left", (("agency", G01), ("component", ""), ("kind", "agency")))] <= 5.0
        assert g[("axis_certificate_days_left", (("agency", G22), ("component", ""), ("kind", "agency")))] > 360
        assert g[("axis_certificate_days_left", (("agency", ""), ("component", ""), ("kind", "ca")))] > 3600
        for kind in ("log", "tls-server"):
            assert g[("axis_certificate_days_left", (("agency", ""), ("component", ""), ("kind", kind)))] > 360
        assert g[("axis_certificate_days_left", (("agency", G22), ("component", ""), ("kind", "tls-client")))] > 360
        assert ("axis_certificate_days_left", (("agency", G03), ("component", ""), ("kind", "agency"))) not in g
        assert 6.9 < g[("axis_crl_days_left", ())] <= 7.0
        assert g[("axis_certificates_due", (("status", "warning"),))] == 1
        assert g[("axis_certificates_due", (("status", "expired"),))] == 0

        # a renewal (the file changes) shows after a refresh; an unreadable file is an error, not a crash
        pki.CertificateAuthority(pki_dir).issue(G01, name="BCA", algorithm="ec")
        (pki_dir / "tls" / "server" / "cert.pem").write_text("not a certificate")
        watch: CertificateWatch = app.state.certificates
        watch.scan_now()
        report = client.get("/admin/certificates", headers=bearer).json()
        assert report["counts"]["warning"] == 0
        assert len(report["errors"]) == 1 and "tls-server" in report["errors"][0]
        assert client.get("/metrics", headers=bearer).status_code == 200


def test_scan_parses_a_file_again_only_when_it_changed(tmp_path: Path) -> None:
    _key, cert = pki.make_ca(algorithm="ec")
    f = tmp_path / "ca.pem"
    f.write_bytes(pki.cert_pem(cert))
    state = ScanState()
    scan([Watched("ca", "", str(f)), Watched("tls-client", G22, str(tmp_path / "none.pem")),
          Watched("log", "", str(tmp_path / "missing.pem"))], set(), state)
    assert [i.kind for i in state.items] == ["ca"]
    assert state.errors == (f"log: {tmp_path / 'missing.pem'} does not exist",)  # a missing client cert is normal
    first = state.cache[("ca", "", str(f), None, "")]
    scan([Watched("ca", "", str(f))], set(), state)
    assert state.cache[("ca", "", str(f), None, "")] is first and len(state.cache) == 1
    _, other = pki.make_ca(algorithm="ec", days=10)
    f.write_bytes(pki.cert_pem(other))
    scan([Watched("ca", "", str(f))], set(), state)
    assert state.items[0].serial == format(other.serial_number, "x")
    scan([Watched("ca", "", str(f))], {format(other.serial_number, "x")}, state)  # revoked: left out
    assert state.items == ()


def test_a_crl_max_age_brings_the_crl_due_sooner(workdir: tuple[Path, dict[str, Any]]) -> None:
    import dataclasses
    from types import SimpleNamespace

    config = load_config(workdir[0])
    pki_cfg = SimpleNamespace(**{f.name: getattr(config.pki, f.name) for f in dataclasses.fields(config.pki)},
                              crl_max_age=dt.timedelta(hours=24))  # pki.crl_max_age_hours: 24
    state = ScanState()
    scan(watched_files(SimpleNamespace(pki=pki_cfg)), set(), state)
    [crl] = [i for i in state.items if i.kind == "crl"]
    assert crl.kind == "crl" and 0.9 < crl.days_left(dt.datetime.now(dt.UTC)) <= 1.0


def test_components_broker_certificates_with_amqps(workdir: tuple[Path, dict[str, Any]]) -> None:
    """broker: {tls: true}: every component's AMQPS client certificate is watched, by its broker user."""
    import dataclasses

    config = load_config(workdir[0])
    pki_dir = config.pki.ca.parent  # type: ignore[union-attr]
    certs_dir = pki_dir / "tls" / "broker"
    pki.issue_broker_certificates(pki_dir, ["axis-router", "axis-server-sh"], certs_dir=certs_dir, days=20)
    plain = {(w.kind, w.component) for w in watched_files(config)}
    assert not any(kind == "broker-client" for kind, _ in plain)  # broker.tls off: not watched
    amqps = dataclasses.replace(config, broker=dataclasses.replace(config.broker, tls=True, certs_dir=certs_dir))
    state = ScanState()
    scan(watched_files(amqps), set(), state)
    broker = sorted((i.component, round(i.days_left(dt.datetime.now(dt.UTC)))) for i in state.items
                    if i.kind == "broker-client")
    assert broker == [("axis-router", 20), ("axis-server-sh", 20)]
    watch = CertificateWatch(lambda: amqps)
    watch.scan_now()
    assert [r.item.component for r in watch.report().due] == ["axis-router", "axis-server-sh"]  # under 30 days
    registry = CollectorRegistry()
    watch.register_metrics(registry)
    g = gauges(generate_latest(registry).decode())
    assert 19.9 < g[("axis_certificate_days_left", (("agency", ""), ("component", "axis-router"),
                                                    ("kind", "broker-client")))] <= 20.0
