"""Config: YAML into frozen dataclasses, validation with clear errors, relative paths, generated work dirs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from axis.config import ConfigError, connections_for, hash_token, load_config, write_connections

BASE = {
    "pki": {"ca": "pki/ca.pem", "crl": "pki/crl.pem"},
    "admin": {"port": 9000, "token_sha256": hash_token("admin")},
    "servers": [
        {"id": "d1", "kind": "dedicated", "port": 9001, "keys": ["000.00.00.G22"]},
        {"id": "sh", "kind": "shared", "port": 9002, "inbox_url": "postgresql+asyncpg://db/inbox"},
    ],
    "agencies": [
        {"code": "000.00.00.G22", "name": "Gov", "server": "d1", "token_sha256": hash_token("t1"),
         "key": "pki/g22.key", "cert": "pki/g22.pem"},
        {"code": "000.00.00.G01", "name": "MPS", "server": "sh", "token_sha256": hash_token("t2")},
    ],
}


def write(tmp_path: Path, raw: dict) -> Path:  # type: ignore[type-arg]
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE), env={})
    assert cfg.amqp_url == "amqp://guest:guest@127.0.0.1/"
    assert cfg.stats_url == f"sqlite+aiosqlite:///{tmp_path}/stats.db"
    assert cfg.pki.ca == tmp_path / "pki/ca.pem"
    assert cfg.admin.port == 9000 and cfg.admin.url == "https://127.0.0.1:9000"  # TLS unless the config says off
    assert cfg.tls.enabled and cfg.tls.cert == tmp_path / "pki/tls/server/cert.pem"  # beside the CA by default
    assert cfg.server("d1").url == "https://127.0.0.1:9001" and cfg.server("d1").client_auth == "off"
    assert cfg.server("d1").inbox_url == f"sqlite+aiosqlite:///{tmp_path}/inbox-d1.db"
    assert cfg.server("sh").inbox_url == "postgresql+asyncpg://db/inbox"
    assert cfg.server("d1").keys == ("000.00.00.G22",)
    g22 = cfg.agency("000.00.00.G22")
    assert g22 is not None and g22.key == tmp_path / "pki/g22.key"
    assert cfg.directory.server_of("000.00.00.G01").kind == "shared"  # type: ignore[union-attr]
    assert cfg.limits.max_envelope_bytes > 0
    assert cfg.hosts == 2 and load_config(write(tmp_path, {**BASE, "hosts": 5}), env={}).hosts == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.amqp_url = "x"  # type: ignore[misc]


def test_env_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE), env={"AXIS_AMQP_URL": "amqp://u:p@h/v", "AXIS_STATS_URL": "sqlite+aiosqlite:///s.db"})
    assert cfg.amqp_url == "amqp://u:p@h/v"
    assert cfg.stats_url == f"sqlite+aiosqlite:///{tmp_path}/s.db"
    cfg2 = load_config(write(tmp_path, {**BASE, "amqp_url": "amqp://x/"}), env={"AXIS_AMQP_URL": "amqp://u:p@h/v"})
    assert cfg2.amqp_url == "amqp://x/"


def test_agencies_file(tmp_path: Path) -> None:
    (tmp_path / "ag.csv").write_text("code,name,server,token_sha256,key,cert\n000.00.00.H53,Tay Ninh,sh,,,\n")
    cfg = load_config(write(tmp_path, {**BASE, "agencies_file": "ag.csv"}), env={})
    assert cfg.directory.server_of("000.00.00.H53").id == "sh"  # type: ignore[union-attr]
    assert len(cfg.agencies) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": [{"id": "d1", "kind": "dedicated"}], "agencies": [{"code": "000.00.00.G22", "server": "zz"}]},
         "unknown server 'zz'"),
        ({"agencies": [*BASE["agencies"], {"code": "000.00.00.G22", "server": "sh"}]}, "duplicate agency"),
        ({"agencies": [{"code": "G-22", "server": "sh"}]}, "malformed agency code"),
        ({"agencies": [*BASE["agencies"], {"code": "000.00.00.H53", "server": "d1"}]}, "dedicated server d1"),
        ({"agencies": [{"code": "000.00.00.H53"}]}, "missing 'server'"),
        ({"servers": [{"id": "x", "kind": "dedicated", "port": "eighty"}]}, "port"),
        ({"servers": [{"id": "d1", "kind": "dedicated", "keys": ["000.00.00.G01"]}, BASE["servers"][1]]},
         "holds the key of 000.00.00.G01"),
        ({"limits": {"max_envelope_bytes": 0}}, "positive"),
        ({"hosts": 0}, "hosts must be positive"),
        ({"hosts": "two"}, "bad number"),
    ],
)
def test_errors(tmp_path: Path, change: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {**BASE, **change}), env={})


def test_missing_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("servers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_connections_for_and_write(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE), env={})
    conn = connections_for(cfg, {"admin": {"token": "admin"}, "agencies": [{"code": "000.00.00.G22", "token": "t1"}]})
    assert conn["admin"] == {"url": "https://127.0.0.1:9000", "token": "admin"}
    by = {a["code"]: a for a in conn["agencies"]}
    assert by["000.00.00.G22"]["token"] == "t1" and by["000.00.00.G01"]["token"] is None
    assert by["000.00.00.G01"]["kind"] == "shared" and by["000.00.00.G01"]["endpoint"] == "https://127.0.0.1:9002"
    path = write_connections(tmp_path, conn)
    assert json.loads(path.read_text()) == conn
    assert path.stat().st_mode & 0o777 == 0o600


def test_generate_workdir(tmp_path: Path) -> None:
    pytest.importorskip("axis.core.pki")
    from axis.config import generate_workdir

    agencies = [("000.00.00.G22", "Gov", "d1"), ("000.00.00.G01", "MPS", "sh"), ("000.00.00.H53", "TN", "sh")]
    path, conn = generate_workdir(tmp_path / "w", agencies, [("d1", "dedicated"), ("sh", "shared")], base_port=9101)
    cfg = load_config(path, env={})
    assert cfg.directory.counts()["agencies"] == 3
    assert [s.port for s in cfg.servers] == [9101, 9102] and cfg.admin.port == 9100
    text = path.read_text()
    for a in conn["agencies"]:
        assert a["token"] not in text  # only hashes in the config
        assert cfg.agency(a["code"]).token_sha256 == hash_token(a["token"])  # type: ignore[union-attr]
        assert Path(a["key"]).is_file() and Path(a["cert"]).is_file()
    assert set(cfg.server("sh").keys) == {"000.00.00.G01", "000.00.00.H53"}
    assert conn["admin"]["url"] == "https://127.0.0.1:9100"
    assert hash_token(conn["admin"]["token"]) == cfg.admin.token_sha256
    assert cfg.tls.missing() is None and all(a["endpoint"].startswith("https://") for a in conn["agencies"])
    for a in conn["agencies"]:  # every agency has its TLS client certificate (mutual TLS)
        assert Path(a["tls_cert"]).is_file() and Path(a["tls_key"]).is_file()
    assert connections_for(cfg, None)["agencies"][0]["tls_cert"] == conn["agencies"][0]["tls_cert"]
    assert Path(conn["ca"]).is_file() and Path(conn["crl"]).is_file()
    assert {a["kind"] for a in conn["agencies"]} == {"dedicated", "shared"}


def test_large_generated_directories_go_to_a_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above CSV_AGENCIES_ABOVE agencies, generate_workdir lists them in agencies.csv (YAML is ~20x slower to
    read at 120,000); the loaded configuration is the same: tokens, keys, the directory."""
    import axis.config.workdir as config_mod
    from axis.config import generate_workdir, hash_token

    monkeypatch.setattr(config_mod, "CSV_AGENCIES_ABOVE", 2)
    agencies = [("000.00.00.G01", "Bộ Công an", "sh"), ("000.00.00.G03", "Bộ Giáo dục", "sh"),
                ("000.00.00.H53", "UBND tỉnh Tây Ninh", "d1")]
    path, conn = generate_workdir(tmp_path / "w", agencies, [("sh", "shared"), ("d1", "dedicated")], base_port=9990)
    assert (tmp_path / "w" / "agencies.csv").is_file()
    cfg = load_config(path, env={})
    assert [a.code for a in cfg.agencies] == [code for code, _, _ in agencies]
    tokens = {a["code"]: a["token"] for a in conn["agencies"]}
    for a in cfg.agencies:
        assert a.token_sha256 == hash_token(tokens[a.code]) and a.key is not None and a.key.is_file()
    assert cfg.agency("000.00.00.H53").server == "d1" and cfg.directory.agency("000.00.00.G03").server == "sh"
