"""AMQPS settings without a broker (contract section 6): the configuration's rules for ``broker.tls``, each
component's certificate and URL, and the rabbitmq.conf lines ``axis pki rabbitmq-conf`` prints. The broker's side is
proven against a real TLS-only node in tests/faults/test_amqps.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from axis.broker.users import (
    ADMIN_USER,
    ROUTER_USER,
    BrokerAuthError,
    component_url,
    issue_component_certificates,
    provisioning_url,
    users_of,
)
from axis.cli import app
from axis.config import ConfigError, config_from_dict
from axis.core import pki
from axis.core.pki import cert_uid

AMQPS = "amqps://guest@127.0.0.1:5671/axis"


def _config(tmp_path: Path, **broker: Any) -> Any:
    if not (tmp_path / "pki" / "ca.cert.pem").exists():
        pki.CertificateAuthority.init(tmp_path / "pki", algorithm="ec")
    raw = {"amqp_url": broker.pop("amqp_url", AMQPS), "pki": {"ca": "pki/ca.cert.pem"}, "broker": broker,
           "servers": [{"id": "d1", "kind": "dedicated"}], "agencies": []}
    return config_from_dict(raw, base=tmp_path, env={})


def test_broker_tls_rules(tmp_path: Path) -> None:
    config = _config(tmp_path, tls=True)
    assert config.broker.tls and config.broker.per_component  # certificates imply one user per component
    assert config.broker.ca == tmp_path / "pki" / "ca.cert.pem"
    assert config.broker.certs_dir == tmp_path / "pki" / "tls" / "broker"
    with pytest.raises(ConfigError, match="amqps://"):
        _config(tmp_path, tls=True, amqp_url="amqp://guest:guest@127.0.0.1/axis")
    with pytest.raises(ConfigError, match=r"broker\.auth: users"):
        _config(tmp_path, tls=True, auth="shared")
    with pytest.raises(ConfigError, match="true or false"):
        _config(tmp_path, tls="yes")
    assert not _config(tmp_path).broker.tls  # off unless asked: the broker must be set up for it


def test_component_certificates_and_urls(tmp_path: Path) -> None:
    config = _config(tmp_path, tls=True)
    with pytest.raises(BrokerAuthError, match="axis up"):
        component_url(config, ROUTER_USER)  # no certificate yet: says what to do
    names = [u.name for u in users_of(config)]
    issue_component_certificates(config, names)
    router = config.broker.certs_dir / "axis.axis-router"
    cert = x509.load_pem_x509_certificate((router / "cert.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "axis.axis-router"
    assert cert_uid(cert) is None  # names no agency: cannot sign a document nor pass an endpoint's mutual TLS
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (router / "key.pem").stat().st_mode & 0o077 == 0
    assert (config.broker.certs_dir / "guest" / "cert.pem").is_file()  # the provisioning account's

    url = urlsplit(component_url(config, ROUTER_USER))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.username, url.password, url.port) == ("amqps", "axis.axis-router", None, 5671)
    assert query == {"auth": "external", "cafile": str(config.broker.ca), "certfile": str(router / "cert.pem"),
                     "keyfile": str(router / "key.pem")}
    assert urlsplit(provisioning_url(config)).username == "guest"
    # only axis-admin has a password (the management API's); every other user has none
    assert {u.name for u in users_of(config) if u.password} == {"axis." + ADMIN_USER}

    # axis up re-runs issuance at every start: a certificate far from expiry is kept, not re-issued
    before = (router / "cert.pem").read_bytes()
    issue_component_certificates(config, names)
    assert (router / "cert.pem").read_bytes() == before


def test_a_certificate_close_to_expiry_is_renewed(tmp_path: Path) -> None:
    config = _config(tmp_path, tls=True)
    ca = pki.CertificateAuthority(tmp_path / "pki")
    key = pki.new_key("ec")
    soon = pki.issue_broker_client_cert(ca.key, ca.cert, "axis.axis-router", key.public_key(), days=10)
    d = config.broker.certs_dir / "axis.axis-router"
    d.mkdir(parents=True)
    (d / "cert.pem").write_bytes(pki.cert_pem(soon))
    (d / "key.pem").write_bytes(pki.key_pem(key))
    issue_component_certificates(config, ["axis.axis-router"])
    renewed = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
    assert renewed.serial_number != soon.serial_number
    assert renewed.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_cli_rabbitmq_conf(tmp_path: Path) -> None:
    runner = CliRunner()
    d = tmp_path / "pki"
    assert runner.invoke(app, ["pki", "init", "--dir", str(d), "--algorithm", "ec"]).exit_code == 0
    r = runner.invoke(app, ["pki", "rabbitmq-conf", "--dir", str(d)])
    assert r.exit_code == 2 and "issue-server" in r.output  # no server certificate yet: says which command
    assert runner.invoke(app, ["pki", "issue-server", "--dir", str(d)]).exit_code == 0
    r = runner.invoke(app, ["pki", "rabbitmq-conf", "--dir", str(d), "--port", "5672"])
    assert r.exit_code == 0
    lines = set(r.stdout.splitlines())
    assert {"listeners.tcp = none", "listeners.ssl.default = 127.0.0.1:5672", "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true", "auth_mechanisms.1 = EXTERNAL",
            "ssl_cert_login_from = common_name", f"ssl_options.cacertfile = {d.resolve() / 'ca.cert.pem'}"} <= lines
    r = runner.invoke(app, ["pki", "rabbitmq-conf", "--dir", str(d), "--keep-plain", "5672", "--port", "5671"])
    assert "listeners.tcp.default = 127.0.0.1:5672" in r.stdout.splitlines()
