"""The configuration's transport security (contract section 6): top-level ``tls`` (on by default, ``tls: off``
for development) and per server ``client_auth``; generated work dirs with HTTPS URLs and client certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from axis.config import ConfigError, connections_for, generate_workdir, hash_token, load_config
from axis.config.loader import tls_enabled
from axis.core import pki

BASE: dict[str, Any] = {
    "pki": {"ca": "pki/ca.cert.pem", "crl": "pki/crl.pem"},
    "admin": {"port": 9000, "token_sha256": hash_token("admin")},
    "servers": [{"id": "sh", "kind": "shared", "port": 9002}],
    "agencies": [{"code": "000.00.00.G01", "name": "MPS", "server": "sh", "token_sha256": hash_token("t")}],
}


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("off", [False, "off", "OFF", "no"])
def test_tls_off(tmp_path: Path, off: object) -> None:
    path = write(tmp_path, {**BASE, "tls": off})
    cfg = load_config(path, env={})
    assert not cfg.tls.enabled and cfg.tls.missing() is None
    assert cfg.admin.url == "http://127.0.0.1:9000" and cfg.server("sh").url == "http://127.0.0.1:9002"
    assert cfg.directory.servers["sh"].url == "http://127.0.0.1:9002"
    assert not tls_enabled(path)
    # YAML 1.1: an unquoted `off` is the boolean false
    path.write_text(path.read_text().replace("tls: false", "tls: off").replace("tls: 'off'", "tls: off"))
    assert not load_config(path, env={}).tls.enabled


def test_tls_on_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    cfg = load_config(path, env={})
    assert cfg.tls.enabled and tls_enabled(path)
    assert cfg.directory.servers["sh"].url == "https://127.0.0.1:9002"
    assert "no" in (cfg.tls.missing() or "") or "does not exist" in (cfg.tls.missing() or "")
    cfg = load_config(write(tmp_path, {**BASE, "tls": {"cert": "c.pem", "key": "k.pem"}}), env={})
    assert (cfg.tls.cert, cfg.tls.key) == (tmp_path / "c.pem", tmp_path / "k.pem")
    assert "does not exist" in (cfg.tls.missing() or "")
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    assert cfg.tls.missing() is None
    no_pki = {k: v for k, v in BASE.items() if k != "pki"}
    assert "no server certificate" in (load_config(write(tmp_path, no_pki), env={}).tls.missing() or "")


@pytest.mark.parametrize(("tls", "server", "message"), [
    (True, {"client_auth": "sometimes"}, "client_auth must be required, optional or off"),
    (False, {"client_auth": "required"}, "needs TLS"),
    ("bad", {}, "tls: must be off, on, or a mapping"),
])
def test_tls_errors(tmp_path: Path, tls: object, server: dict[str, Any], message: str) -> None:
    raw = {**BASE, "tls": tls, "servers": [{**BASE["servers"][0], **server}]}
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, raw), env={})


def test_client_auth(tmp_path: Path) -> None:
    for value, mode in (("required", "required"), ("Optional", "optional"), (False, "off"), ("off", "off")):
        raw = {**BASE, "servers": [{**BASE["servers"][0], "client_auth": value}]}
        assert load_config(write(tmp_path, raw), env={}).server("sh").client_auth == mode
    raw = {**BASE, "pki": {}, "servers": [{**BASE["servers"][0], "client_auth": "required"}]}
    with pytest.raises(ConfigError, match=r"needs pki\.ca"):
        load_config(write(tmp_path, raw), env={})


def test_generated_work_dir(tmp_path: Path) -> None:
    agencies = [("000.00.00.G22", "Gov", "d1"), ("000.00.00.G01", "MPS", "sh")]
    path, conn = generate_workdir(tmp_path / "w", agencies, [("d1", "dedicated"), ("sh", "shared")], base_port=9101,
                                  client_auth="required", server_names=["axis.example"])
    cfg = load_config(path, env={})
    assert cfg.tls.enabled and cfg.tls.missing() is None
    assert {s.client_auth for s in cfg.servers} == {"required"}
    assert conn["admin"]["url"] == "https://127.0.0.1:9100" and Path(conn["ca"]) == cfg.pki.ca
    server = pki.load_certs(cfg.tls.cert.read_bytes())[0]  # type: ignore[union-attr]
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "axis.example" in names.get_values_for_type(x509.DNSName)
    for a in conn["agencies"]:
        assert a["endpoint"].startswith("https://127.0.0.1:")
        cert = pki.load_certs(Path(a["tls_cert"]).read_bytes())[0]
        assert pki.cert_uid(cert) == a["code"] and Path(a["tls_key"]).is_file()
    assert [a.get("tls_cert") for a in connections_for(cfg)["agencies"]] == [a["tls_cert"] for a in conn["agencies"]]

    path, conn = generate_workdir(tmp_path / "plain", agencies, [("d1", "dedicated"), ("sh", "shared")], tls=False)
    assert "tls: false" in path.read_text()
    cfg = load_config(path, env={})
    assert not cfg.tls.enabled and conn["admin"]["url"].startswith("http://")
    assert all(a["endpoint"].startswith("http://") and "tls_cert" not in a for a in conn["agencies"])
    with pytest.raises(ValueError, match="needs tls"):
        generate_workdir(tmp_path / "x", agencies, [("d1", "dedicated"), ("sh", "shared")], tls=False,
                         client_auth="required")
