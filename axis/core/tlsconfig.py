"""The TLS settings of every axis server and client, in one place (contract section 6; stdlib ``ssl`` only).

Servers (endpoint servers, the admin app): TLS 1.2 at least (1.3 preferred: OpenSSL negotiates the highest
both sides speak); for TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305) — forward
secrecy, no CBC, no RSA key transport, no SHA-1 MACs; the TLS 1.3 suites are OpenSSL's (all AEAD). No compression,
no renegotiation; session tickets on (a reconnecting client resumes without a full handshake).

Mutual TLS (``client_auth`` per server): the server asks for a client certificate and verifies it against the
axis CA when one is presented (``CERT_OPTIONAL`` at the TLS layer, for ``optional`` and ``required`` alike) —
a certificate from any other CA fails the handshake. Whether a certificate is *required*, and whether its subject
UID is the bearer token's agency, is decided per request by the endpoint server (a ``401 UNAUTHORIZED``
problem+json tells agency software what is wrong, where a failed handshake would not; ``/healthz`` stays
reachable for health probes).

Clients (``axis.client``, the CLI, the simulator, health probes): verify the server's certificate and host name
against the axis CA (``ca``, from connections.json or the configuration), never against the system store alone
when a CA is given; present an agency's client certificate when one is given.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

#: The configuration's values of ``client_auth`` (per server).
CLIENT_AUTH_OFF, CLIENT_AUTH_OPTIONAL, CLIENT_AUTH_REQUIRED = "off", "optional", "required"
CLIENT_AUTH_MODES = (CLIENT_AUTH_OFF, CLIENT_AUTH_OPTIONAL, CLIENT_AUTH_REQUIRED)
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: TLS 1.2 cipher suites (OpenSSL names): ephemeral ECDH, AEAD only, ECDSA or RSA certificates.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"
#: A client that has not finished its handshake within this long is dropped (asyncio's default is 60 s).
HANDSHAKE_TIMEOUT = 10.0

PathLike = str | Path


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def server_context(cert: PathLike, key: PathLike, *, client_ca: PathLike | None = None,
                   client_auth: str = CLIENT_AUTH_OFF) -> ssl.SSLContext:
    """The SSLContext of a server presenting ``cert``/``key``. With ``client_ca`` it can verify client
    certificates: :func:`set_client_auth` turns asking for them on or off (also on a hot reload)."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
    set_client_auth(ctx, client_auth)
    return ctx


def reload_server_contexts(contexts: Iterable[ssl.SSLContext], cert: PathLike, key: PathLike, *,
                           client_ca: PathLike | None = None) -> None:
    """Rotation without a restart (on SIGHUP; ``axis up`` sends one when the files change): ``contexts`` present
    ``cert``/``key`` — and also trust ``client_ca`` — from their next handshake on; connections already open keep
    theirs. A pair that does not load (a key that does not match, a file half-written) raises before any context
    changes, so a reload fails whole and the servers go on with what they had."""
    server_context(cert, key, client_ca=client_ca)  # the whole set loads, or nothing changes
    for ctx in contexts:
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))


def set_client_auth(ctx: ssl.SSLContext, client_auth: str) -> None:
    """Ask TLS clients for a certificate (``optional``/``required``: verified against the context's CA when
    presented) or not (``off``). New connections use the new mode; a context without a CA cannot ask."""
    if client_auth not in CLIENT_AUTH_MODES:
        raise ValueError(f"client_auth must be one of {', '.join(CLIENT_AUTH_MODES)}, not {client_auth!r}")
    if client_auth != CLIENT_AUTH_OFF and not ctx.get_ca_certs():
        raise ValueError("client_auth needs the CA that issues the client certificates (pki.ca)")
    ctx.verify_mode = ssl.CERT_NONE if client_auth == CLIENT_AUTH_OFF else ssl.CERT_OPTIONAL


def client_context(ca: PathLike | None = None, cert: PathLike | None = None, key: PathLike | None = None
                   ) -> ssl.SSLContext:
    """The SSLContext of a client: verifies the server's certificate and host name against ``ca`` (the axis CA;
    the system's trust store when None), presents ``cert``/``key`` (mutual TLS) when given."""
    ctx = _harden(ssl.create_default_context(cafile=str(ca) if ca is not None else None))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    return ctx


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The DER bytes of the verified certificate the peer presented, or None."""
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)


PLAINTEXT_WARNING = ("WARNING: TLS is off (tls: off in the configuration) — every server speaks plain HTTP: tokens "
                     "and documents travel in cleartext. For development only.")
