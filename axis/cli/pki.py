"""`axis pki` commands: a root CA, agency signing certificates, TLS server and client certificates, revocation
(contract sections 3 and 6).

Exit status: 0 done; 1 refused (a CA already exists, revoking an agency that has no certificate);
2 usage error (no CA in --dir, malformed agency code, bad option values).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from axis.cli._common import EXIT_REFUSED, console, err_console, fail, print_json, safe, usage_error
from axis.core import pki as core
from axis.core.reasons import Refusal

app = typer.Typer(help="The axis PKI: root CA, agency signing certificates, TLS certificates, CRL.",
                  no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="PKI directory (ca.cert.pem, crl.pem, agencies/<CODE>/...)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


class KeyAlgorithm(StrEnum):
    rsa = "rsa"
    ec = "ec"


def _open(directory: Path) -> core.CertificateAuthority:
    try:
        return core.CertificateAuthority(directory)
    except core.PkiError as exc:
        usage_error(str(exc))


@app.command()
def init(
    dir: DirOpt,
    algorithm: Annotated[KeyAlgorithm, typer.Option("--algorithm", help="CA key type")] = KeyAlgorithm.rsa,
    days: Annotated[int, typer.Option("--days", min=1, help="CA validity in days")] = 3650,
    as_json: JsonOpt = False,
) -> None:
    """Create the axis root CA (key, certificate, empty CRL) in DIR."""
    try:
        ca = core.CertificateAuthority.init(dir, algorithm=algorithm.value, days=days)
    except FileExistsError as exc:
        if as_json:
            print_json({"ok": False, "reason": None, "detail": str(exc)})
        else:
            err_console.print(f"[bold red]refused:[/] {safe(exc)}")
        raise typer.Exit(EXIT_REFUSED) from None
    result = {"ok": True, "ca": str(ca.ca_path), "crl": str(ca.crl_path), "key": str(ca.dir / core.CA_KEY)}
    if as_json:
        print_json(result)
    else:
        console.print(f"CA certificate: {safe(ca.ca_path)}\nCRL:            {safe(ca.crl_path)}")


@app.command()
def issue(
    code: Annotated[str, typer.Argument(help="agency code (subject UID), e.g. 000.00.00.G22")],
    dir: DirOpt,
    name: Annotated[str | None, typer.Option("--name", help="agency name (subject CN)")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="validity in days")] = 365,
    algorithm: Annotated[KeyAlgorithm, typer.Option("--algorithm", help="key type: rsa (2048) or ec (P-256)")] = (
        KeyAlgorithm.rsa
    ),
    as_json: JsonOpt = False,
) -> None:
    """Issue an agency signing certificate (subject UID = CODE); prints the key and cert paths."""
    ca = _open(dir)
    try:
        issued = ca.issue(code, name=name, days=days, algorithm=algorithm.value)
    except core.PkiError as exc:
        usage_error(str(exc))
    if as_json:
        print_json({"ok": True, **issued.as_dict()})
    else:
        console.print(f"key:  {safe(issued.key_path)}\ncert: {safe(issued.cert_path)}")


@app.command("issue-server")
def issue_server(
    dir: DirOpt,
    host: Annotated[list[str] | None, typer.Option("--host", help="a host name or IP address clients use (repeat); "
                                                   "127.0.0.1 and localhost are always included")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="validity in days")] = 365,
    algorithm: Annotated[KeyAlgorithm, typer.Option("--algorithm", help="key type: ec (P-256) or rsa (2048)")] = (
        KeyAlgorithm.ec
    ),
    as_json: JsonOpt = False,
) -> None:
    """Issue the TLS server certificate of the endpoint and admin servers (serverAuth; SANs 127.0.0.1, localhost
    and every --host) into DIR/tls/server/; prints the key and cert paths (the configuration's tls: cert, key)."""
    _open(dir)
    try:
        issued = core.issue_server_certificate(dir, host or (), days=days, algorithm=algorithm.value)
    except core.PkiError as exc:
        usage_error(str(exc))
    names = core.server_names(host or ())
    if as_json:
        print_json({"ok": True, **issued.as_dict(), "names": names})
    else:
        console.print(f"key:   {safe(issued.key_path)}\ncert:  {safe(issued.cert_path)}\n"
                      f"names: {safe(', '.join(names))}")


@app.command("issue-client")
def issue_client(
    code: Annotated[str, typer.Argument(help="agency code (subject UID), e.g. 000.00.00.G22")],
    dir: DirOpt,
    name: Annotated[str | None, typer.Option("--name", help="agency name (subject CN)")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="validity in days")] = 365,
    algorithm: Annotated[KeyAlgorithm, typer.Option("--algorithm", help="key type: ec (P-256) or rsa (2048)")] = (
        KeyAlgorithm.ec
    ),
    as_json: JsonOpt = False,
) -> None:
    """Issue an agency's TLS client certificate for mutual TLS (subject UID = CODE, clientAuth) into
    DIR/tls/clients/CODE/; prints the key and cert paths (connections.json's tls_key, tls_cert)."""
    _open(dir)
    try:
        issued = core.issue_client_certificates(dir, [(code, name)], days=days, algorithm=algorithm.value)[0]
    except core.PkiError as exc:
        usage_error(str(exc))
    if as_json:
        print_json({"ok": True, **issued.as_dict()})
    else:
        console.print(f"key:  {safe(issued.key_path)}\ncert: {safe(issued.cert_path)}")


@app.command()
def revoke(
    code: Annotated[str, typer.Argument(help="agency code whose current certificate is revoked")],
    dir: DirOpt,
    tls_client: Annotated[bool, typer.Option("--tls-client", help="revoke the agency's TLS client certificate "
                                             "instead of its signing certificate")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Revoke the agency's current signing (or, with --tls-client, TLS client) certificate and re-issue the CRL."""
    ca = _open(dir)
    try:
        serial = core.revoke_client_certificate(dir, code) if tls_client else ca.revoke(code)
    except core.PkiError as exc:
        usage_error(str(exc))
    except Refusal as refusal:
        fail(refusal, as_json=as_json)
    if as_json:
        print_json({"ok": True, "code": code, "serial": format(serial, "x"), "crl": str(ca.crl_path)})
    else:
        console.print(f"revoked {safe(code)} (serial {serial:x}); CRL: {safe(ca.crl_path)}")


@app.command()
def crl(
    dir: DirOpt,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="validity (nextUpdate) in days")] = core.CRL_DAYS,
    as_json: JsonOpt = False,
) -> None:
    """Issue a fresh CRL (the same revocations, a new thisUpdate and nextUpdate). Run it regularly (cron): a CRL past
    its nextUpdate, or older than pki.crl_max_age_hours, is stale and the axis then refuses signed documents
    (CERT_UNTRUSTED) and TLS client certificates until a fresh one is in place. Endpoint servers re-read the file
    when it changes; routers on a hot reload (SIGHUP) — `axis up` sends one when the CRL changes."""
    ca = _open(dir)
    issued = ca.write_crl(days=days)
    result = {"ok": True, "crl": str(ca.crl_path), "revoked": len(list(issued)),
              "this_update": issued.last_update_utc.isoformat(),
              "next_update": issued.next_update_utc.isoformat() if issued.next_update_utc else None}
    if as_json:
        print_json(result)
    else:
        console.print(f"CRL: {safe(ca.crl_path)} — {result['revoked']} revoked, next update {result['next_update']}")


@app.command("rabbitmq-conf")
def rabbitmq_conf(
    dir: DirOpt,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="the AMQPS port")] = 5671,
    host: Annotated[str, typer.Option("--host", help="the address RabbitMQ listens on")] = "127.0.0.1",
    plain_port: Annotated[int | None, typer.Option(
        "--keep-plain", min=1, max=65535, help="also keep plain AMQP on this port (default: plain AMQP off)")] = None,
) -> None:
    """Print the rabbitmq.conf lines for AMQPS with certificate-authenticated components (broker: {tls: true}):
    the broker presents DIR/tls/server's certificate (`axis pki issue-server`), accepts only peers with a
    certificate from this CA, and makes each one the broker user its certificate's CN names (SASL EXTERNAL)."""
    from axis.broker.tlsconf import EXTERNAL_AUTH_PLUGIN, rabbitmq_tls_conf

    ca = _open(dir)
    server = dir.resolve() / core.SERVER_DIR
    if not (server / "cert.pem").is_file():
        usage_error(f"no server certificate in {server}: run `axis pki issue-server --dir {dir}` first")
    typer.echo(rabbitmq_tls_conf(ca=ca.ca_path.resolve(), cert=server / "cert.pem", key=server / "key.pem",
                                 port=port, host=host, plain_port=plain_port), nl=False)
    typer.echo(f"# and: rabbitmq-plugins enable {EXTERNAL_AUTH_PLUGIN}", err=True)
