"""HTTPS and mutual TLS on a real endpoint server (uvicorn on the guarded httptools protocol, as endpoints/host.py
runs it; a generated work dir; no broker): TLS 1.2 at least, no plain HTTP on the HTTPS port, ``curl --cacert``,
a client trusting another CA refused; with ``client_auth: required`` a request without the agency's certificate,
with another agency's, with a signing certificate or with a revoked one is refused 401 UNAUTHORIZED, with its own
it is served; ``optional`` checks what is presented; ``tls: off`` is announced on the first line of ``axis serve``."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from axis.config import Config, generate_workdir, load_config
from axis.core import pki
from axis.core.tlsconfig import PLAINTEXT_WARNING, client_context
from axis.stats.counting import MemoryCounter
from endpoints import mtls
from endpoints.app import create_app
from endpoints.gate import GatedApp
from endpoints.host import ConnectionGuard, server_contexts, uvicorn_server
from endpoints.inbox import open_inbox
from endpoints.refusals import RefusalRecorder
from endpoints.server import EndpointServer
from tests.support.testing import make_pki

G01, G03 = "000.00.00.G01", "000.00.00.G03"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    config: Config
    url: str
    port: int
    agencies: dict[str, dict[str, Any]]  # connections.json's entries by code
    ca: Path

    def client(self, code: str | None = None, *, cert: tuple[Path | str, Path | str] | None = None,
               ca: Path | None = None, token_of: str | None = None) -> httpx.AsyncClient:
        """An HTTPS client trusting ``ca`` (the axis CA), presenting ``cert`` (default: ``code``'s TLS client
        certificate, if ``code``), with the token of ``token_of`` (default ``code``)."""
        if cert is None and code is not None:
            cert = (self.agencies[code]["tls_cert"], self.agencies[code]["tls_key"])
        ctx = client_context(ca or self.ca, *(cert or (None, None)))
        token = self.agencies[token_of or code or G01]["token"]
        return httpx.AsyncClient(base_url=self.url, verify=ctx, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"})


Serve = Callable[..., Any]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """``await serve(client_auth)``: a shared server of G01 and G03 over HTTPS with that client_auth."""
    stops: list[Any] = []

    async def start(client_auth: str = "off") -> Served:
        work = tmp_path / client_auth
        path, conn = generate_workdir(work, [(G01, "A", "sh"), (G03, "B", "sh")], [("sh", "shared")],
                                      client_auth=client_auth)
        config = load_config(path)
        store = await open_inbox(f"sqlite+aiosqlite:///{work / 'inbox.db'}")
        srv = EndpointServer(config, "sh", store=store)
        srv.refusals = RefusalRecorder(MemoryCounter())
        server = uvicorn_server(GatedApp(create_app(srv), srv.gate), "127.0.0.1", 0, ConnectionGuard(),
                                ssl_context=server_contexts(config, ["sh"])["sh"])
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]

        async def stop() -> None:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            await store.close()

        stops.append(stop)
        assert config.pki.ca is not None
        return Served(config, f"https://127.0.0.1:{port}", port, {a["code"]: a for a in conn["agencies"]},
                      config.pki.ca)

    yield start
    for stop in stops:
        await stop()


async def _get(client: httpx.AsyncClient, path: str = "/v1/inbox") -> httpx.Response:
    async with client:
        return await client.get(path)


def _unauthorized(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["reason"] == "UNAUTHORIZED" and words in body["detail"], body


# ---- HTTPS ---------------------------------------------------------------------------------------------------


async def test_https_only_tls12_and_up(serve: Serve) -> None:
    s = await serve()
    # a raw TLS socket: the handshake, the certificate chain to the axis CA and its name
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port, ssl=client_context(s.ca))
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.version() == "TLSv1.3"
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
    writer.close()
    # TLS 1.2 is accepted, with an AEAD cipher
    tls12 = client_context(s.ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    _, writer = await asyncio.open_connection("127.0.0.1", s.port, ssl=tls12)
    version, cipher = writer.get_extra_info("ssl_object").version(), writer.get_extra_info("cipher")[0]
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
    writer.close()
    # TLS 1.1: the server refuses (the client is made willing: any failure is the server's)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with pytest.warns(DeprecationWarning):
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", s.port, ssl=old)


async def test_plain_http_is_refused_on_the_https_port(serve: Serve) -> None:
    s = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        data = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        data = b""
    writer.close()
    assert b"HTTP/1.1 200" not in data and b'"ok"' not in data  # no HTTP answer, only a TLS alert (or nothing)
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient(trust_env=False) as c:
            await c.get(f"http://127.0.0.1:{s.port}/healthz")


async def test_curl_and_clients_verify_against_the_axis_ca(serve: Serve, tmp_path: Path) -> None:
    s = await serve()
    curl = shutil.which("curl")
    if curl is not None:
        ok = await asyncio.create_subprocess_exec(curl, "-sS", "--cacert", str(s.ca), f"{s.url}/healthz",
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await ok.communicate()
        assert ok.returncode == 0 and b'"ok":true' in out, err
        bad = await asyncio.create_subprocess_exec(curl, "-sS", f"{s.url}/healthz", stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)  # the system's trust store only
        await bad.communicate()
        assert bad.returncode == 60  # peer certificate cannot be authenticated with known CA certificates
    r = await _get(s.client(G01), "/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    other = make_pki(tmp_path / "other", [G01], algorithm="ec")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await _get(s.client(G01, ca=other.ca_pem))
    # axis.client takes the CA (and, for mutual TLS, the certificate) from connections.json
    from axis.client import AsyncClient

    async with AsyncClient(s.url, s.agencies[G01]["token"], ca=s.ca) as c:
        assert (await c.health())["ok"] is True and await c.inbox() == []


# ---- mutual TLS ----------------------------------------------------------------------------------------------


async def test_client_auth_required(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mtls, "CRL_CHECK_SECONDS", 0.0)  # re-read the CRL at once after the revocation below
    s = await serve("required")
    assert (await _get(s.client(G01))).status_code == 200  # the token's agency and the certificate's agree
    _unauthorized(await _get(s.client(cert=None, token_of=G01)), "requires your agency's TLS client certificate")
    assert (await _get(s.client(), "/healthz")).status_code == 200  # health probes need no certificate
    # another agency's certificate (valid, from the axis CA) with G01's token
    g03 = (s.agencies[G03]["tls_cert"], s.agencies[G03]["tls_key"])
    _unauthorized(await _get(s.client(cert=g03, token_of=G01)), "not your agency's")
    # G01's document-signing certificate is from the axis CA and names G01, but is no TLS client certificate
    _unauthorized(await _get(s.client(cert=(s.agencies[G01]["cert"], s.agencies[G01]["key"]), token_of=G01)),
                  "not a TLS client certificate")
    # a certificate from another CA: the handshake itself fails
    other = make_pki(s.ca.parent.parent / "other", [G01], algorithm="ec")
    foreign = pki.issue_client_certificates(other.dir, [(G01, None)])[0]
    with pytest.raises(httpx.HTTPError):
        await _get(s.client(cert=(foreign.cert_path, foreign.key_path), token_of=G01))
    # revoked: refused from the next request on (the CRL file is re-read when it changes)
    pki.revoke_client_certificate(s.ca.parent, G01)
    _unauthorized(await _get(s.client(G01)), "revoked")
    assert (await _get(s.client(G03))).status_code == 200


async def test_client_auth_optional(serve: Serve) -> None:
    s = await serve("optional")
    assert (await _get(s.client(cert=None, token_of=G01))).status_code == 200  # none presented: the token alone
    assert (await _get(s.client(G01))).status_code == 200
    g03 = (s.agencies[G03]["tls_cert"], s.agencies[G03]["tls_key"])
    _unauthorized(await _get(s.client(cert=g03, token_of=G01)), "not your agency's")


async def test_client_auth_off_ignores_certificates(serve: Serve) -> None:
    s = await serve("off")
    assert (await _get(s.client(cert=None, token_of=G01))).status_code == 200
    g03 = (s.agencies[G03]["tls_cert"], s.agencies[G03]["tls_key"])
    assert (await _get(s.client(cert=g03, token_of=G01))).status_code == 200  # not asked for, not looked at


async def test_an_unreadable_crl_refuses_every_certificate(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mtls, "CRL_CHECK_SECONDS", 0.0)
    s = await serve("required")
    assert s.config.pki.crl is not None
    other = make_pki(s.ca.parent.parent / "other", [G01], algorithm="ec")
    s.config.pki.crl.write_bytes(other.crl_pem.read_bytes())  # a CRL the axis CA did not sign
    _unauthorized(await _get(s.client(G01)), "cannot be checked")


# ---- tls: off ------------------------------------------------------------------------------------------------


def test_tls_off_is_announced_first(tmp_path: Path) -> None:
    """``axis serve`` with ``tls: off`` says so on its first line (before it even reaches the broker)."""
    path, _ = generate_workdir(tmp_path, [(G01, "A", "sh")], [("sh", "shared")], tls=False,
                               amqp_url="amqp://guest:guest@127.0.0.1:1/", broker_auth="shared")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    proc = subprocess.Popen([sys.executable, "-m", "axis", "serve", "--config", str(path), "--server", "sh"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().decode()
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert first.strip() == PLAINTEXT_WARNING


# ---- the simulator's lean client -----------------------------------------------------------------------------


async def test_the_simulator_verifies_and_presents_certificates(serve: Serve) -> None:
    """axis.sim: the pool trusts connections.json's CA; an agency whose server asks for client certificates
    (connections.json's client_auth) presents its own, on connections pooled apart from the others'."""
    from axis.sim.api import Api, new_client
    from axis.sim.connections import from_dict

    s = await serve("required")
    raw = {"ca": str(s.ca), "admin": {"url": s.url, "token": "x"}, "agencies": list(s.agencies.values())}
    conns = from_dict(raw)
    assert conns.agencies[G01].client_auth == "required" and conns.agencies[G01].tls_cert
    async with new_client(4, conns) as pool:
        api = Api(pool, conns, retries=0)
        assert await api.inbox(s.url, s.agencies[G01]["token"]) == []
        assert await api.inbox(s.url, s.agencies[G03]["token"]) == []
        assert len(pool._idle) == 2  # one kept-alive connection per agency certificate
        plain = Api(pool, retries=0)  # no connections.json: no client certificate
        a = await plain.call("GET", f"{s.url}/v1/inbox", s.agencies[G01]["token"])
        assert a.status == 401 and a.reason == "UNAUTHORIZED"
    async with new_client(4) as pool:  # the system's trust store: the axis CA is not in it
        from axis.sim.http import TransportError

        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await Api(pool, retries=0).call("GET", f"{s.url}/healthz", None)


async def test_a_stale_crl_refuses_every_certificate_until_a_fresh_one(serve: Serve,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """CRL freshness (issue 18 item 4): past its nextUpdate a CRL vouches for nothing; `axis pki crl` mends it."""
    monkeypatch.setattr(mtls, "CRL_CHECK_SECONDS", 0.0)
    s = await serve("required")
    assert s.config.pki.crl is not None
    ca = pki.CertificateAuthority(s.ca.parent)
    stale = pki.make_crl(ca.key, ca.cert, ca.revoked(), days=7, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
    s.config.pki.crl.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    _unauthorized(await _get(s.client(G01)), "the CRL is stale")
    ca.write_crl()  # what `axis pki crl` does
    assert (await _get(s.client(G01))).status_code == 200
