"""The axis PKI: a root CA, agency signing certificates and a CRL (``cryptography``).

Directory layout under ``DIR`` (what ``axis pki`` writes)::

    ca.key.pem            CA private key (0600)
    ca.cert.pem           CA certificate (self-signed, CA:TRUE, keyCertSign + cRLSign)
    crl.pem               CRL signed by the CA, re-issued on every revocation
    index.json            issued certificates: {"certs": [{"code", "serial", "not_after", "revoked_at"}...]}
    agencies/<CODE>/key.pem   agency private key (0600)
    agencies/<CODE>/cert.pem  agency certificate (subject UID = CODE, CN = name; digitalSignature + nonRepudiation)
    log/key.pem, log/cert.pem the evidence log's signing key and certificate (CN axis transparency log, no UID)
    tls/server/key.pem, cert.pem          the TLS server certificate of every endpoint and admin server
                                          (SANs 127.0.0.1, localhost and the configured host names; serverAuth)
    tls/clients/<CODE>/key.pem, cert.pem  an agency software's TLS client certificate (subject UID = CODE;
                                          clientAuth) for mutual TLS

Issuing to an agency that already has a certificate replaces its key and certificate (the old serial stays in
the index; revoke it first if it must stop verifying). EC P-256 keys are much faster to generate than RSA-2048,
which matters when the simulator issues thousands of certificates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from axis.core.reasons import Reason, Refusal

Algorithm = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

#: Agency codes: both the QCVN 102:2016 form (000.00.00.G22) and the 2020 form (H55.242), up to 35 characters.
CODE_RE = re.compile(r"^[0-9A-Z]{1,10}(\.[0-9A-Z]{1,10}){0,7}$")
UID_OID = NameOID.USER_ID  # 0.9.2342.19200300.100.1.1

CA_KEY, CA_CERT, CRL, INDEX = "ca.key.pem", "ca.cert.pem", "crl.pem", "index.json"
CRL_DAYS = 7


class PkiError(Exception):
    """A usage problem with a PKI directory (missing CA, bad code): the CLI maps it to exit 2."""


def valid_code(code: str) -> bool:
    return len(code) <= 35 and CODE_RE.match(code) is not None


#: RFC 5280 ub-common-name is 64; cryptography counts it in UTF-8 bytes. Agency names can be longer (Vietnamese
#: letters take 2-3 bytes each): the CN is cut there — it is for display, the UID is the identity.
CN_MAX_BYTES = 64


def _cn(name: str) -> x509.NameAttribute[str]:
    if len(name.encode("utf-8")) > CN_MAX_BYTES:
        name = name.encode("utf-8")[: CN_MAX_BYTES - 3].decode("utf-8", "ignore") + "…"
    return x509.NameAttribute(NameOID.COMMON_NAME, name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key(algorithm: Algorithm = "rsa") -> PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise PkiError(f"unknown algorithm {algorithm!r} (rsa or ec)")


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("only RSA and EC keys are supported")
    return key


def load_certs(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(data)


def issuer_public_key(cert: x509.Certificate) -> CertificateIssuerPublicKeyTypes:
    """The public key of ``cert`` as the key of an issuer (of certificates, of CRLs): TypeError for a key kind
    that cannot sign (X25519, X448, ML-KEM, ...), as cryptography itself raises when given one."""
    key = cert.public_key()
    if not isinstance(key, dsa.DSAPublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        raise TypeError(f"a {type(key).__name__} cannot sign certificates or CRLs")
    return key


def _hash_for(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


def make_ca(
    name: str = "axis root CA", *, algorithm: Algorithm = "rsa", days: int = 3650, now: dt.datetime | None = None
) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed root CA: CA:TRUE (path length 0), keyCertSign + cRLSign."""
    now = now or _now()
    key = new_key(algorithm)
    subject = x509.Name([
        _cn(name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis")
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )
    return key, cert


def _end_entity(ca_cert: x509.Certificate, subject: x509.Name,
                public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, start: dt.datetime, days: int, *,
                serial: int | None = None) -> x509.CertificateBuilder:
    """What every certificate the axis CA issues to a non-CA shares: subject, issuer, key, serial, validity from
    ``start`` for ``days``, not a CA (critical), the CA's key identifier."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key(ca_cert)), critical=False)
    )


def issue_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    code: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    name: str | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
    key_usage: bool = True,
    digital_signature: bool = True,
    serial: int | None = None,
) -> x509.Certificate:
    """An agency signing certificate: subject UID = ``code``, CN = ``name`` (cut to 64 UTF-8 bytes, RFC 5280's
    limit as cryptography counts it); digitalSignature + nonRepudiation.

    ``key_usage``/``digital_signature``/``not_before`` exist so tests can make wrong certificates on purpose.
    """
    start = not_before or (_now() - dt.timedelta(minutes=5))
    subject = x509.Name([
        x509.NameAttribute(UID_OID, code),
        _cn(name or code),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis"),
    ])
    builder = _end_entity(ca_cert, subject, public_key, start, days, serial=serial)
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, content_commitment=True, key_encipherment=not digital_signature,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(ca_key, _hash_for(ca_key))


def make_crl(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    revoked: list[tuple[int, dt.datetime]],
    *,
    days: int = CRL_DAYS,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL listing ``revoked`` (serial, revocation time), valid for ``days``."""
    now = now or _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, _hash_for(ca_key))


def cert_uid(cert: x509.Certificate) -> str | None:
    """The subject UID attribute (the agency code), or None when absent or repeated."""
    attrs = cert.subject.get_attributes_for_oid(UID_OID)
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else None


# ---- the directory layout --------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True)
class Issued:
    code: str
    key_path: Path
    cert_path: Path
    serial: int
    not_after: dt.datetime

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "key": str(self.key_path), "cert": str(self.cert_path),
                "serial": format(self.serial, "x"), "not_after": self.not_after.isoformat()}


class CertificateAuthority:
    """A CA directory on disk. ``init`` creates one; the constructor opens an existing one."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        if not (self.dir / CA_KEY).is_file() or not (self.dir / CA_CERT).is_file():
            raise PkiError(f"no axis CA in {self.dir} (run: axis pki init --dir {self.dir})")
        self.key = load_key((self.dir / CA_KEY).read_bytes())
        self.cert = load_certs((self.dir / CA_CERT).read_bytes())[0]

    @classmethod
    def init(cls, directory: Path | str, *, algorithm: Algorithm = "rsa", name: str = "axis root CA",
             days: int = 3650) -> CertificateAuthority:
        """Create the CA key, certificate, an empty CRL and index. Refuses to overwrite an existing CA."""
        d = Path(directory)
        if (d / CA_KEY).exists():
            raise FileExistsError(f"a CA already exists in {d}")
        d.mkdir(parents=True, exist_ok=True)
        key, cert = make_ca(name, algorithm=algorithm, days=days)
        _write_private(d / CA_KEY, key_pem(key))
        _write_public(d / CA_CERT, cert_pem(cert))
        _write_public(d / INDEX, json.dumps({"certs": []}, indent=1).encode())
        ca = cls(d)
        ca.write_crl()
        return ca

    @property
    def ca_path(self) -> Path:
        return self.dir / CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.dir / CRL

    def agency_dir(self, code: str) -> Path:
        return self.dir / "agencies" / code

    def _index(self) -> list[dict[str, object]]:
        path = self.dir / INDEX
        if not path.is_file():
            return []
        certs = json.loads(path.read_text()).get("certs", [])
        return certs if isinstance(certs, list) else []

    def _save_index(self, certs: list[dict[str, object]]) -> None:
        _write_public(self.dir / INDEX, json.dumps({"certs": certs}, indent=1).encode())

    def issue(self, code: str, *, name: str | None = None, days: int = 365, algorithm: Algorithm = "rsa") -> Issued:
        """Issue (or re-issue) one agency's key and certificate."""
        return self.issue_many([(code, name)], days=days, algorithm=algorithm)[0]

    def issue_many(self, agencies: list[tuple[str, str | None]], *, days: int = 365, algorithm: Algorithm = "rsa"
                   ) -> list[Issued]:
        """Issue certificates to many (code, name) at once, writing the index once (use "ec" for thousands)."""
        for code, _ in agencies:
            if not valid_code(code):
                raise PkiError(f"malformed agency code {code!r} (e.g. 000.00.00.G22 or H55.242)")
        if days < 1:
            raise PkiError("--days must be at least 1")
        certs = self._index()
        out = []
        for code, name in agencies:
            key = new_key(algorithm)
            cert = issue_cert(self.key, self.cert, code, key.public_key(), name=name, days=days)
            d = self.agency_dir(code)
            _write_private(d / "key.pem", key_pem(key))
            _write_public(d / "cert.pem", cert_pem(cert))
            certs.append({"code": code, "serial": format(cert.serial_number, "x"),
                          "not_after": cert.not_valid_after_utc.isoformat(), "revoked_at": None})
            out.append(Issued(code, d / "key.pem", d / "cert.pem", cert.serial_number, cert.not_valid_after_utc))
        self._save_index(certs)
        return out

    def revoke(self, code: str) -> int:
        """Revoke the agency's current certificate and re-issue the CRL; returns the revoked serial.

        Raises Refusal(CERT_UNTRUSTED) for an agency this CA never issued to (the CLI exits 1).
        """
        if not valid_code(code):
            raise PkiError(f"malformed agency code {code!r}")
        return self.revoke_file(code, self.agency_dir(code) / "cert.pem", "certificate")

    def revoke_file(self, code: str, cert_file: Path, what: str) -> int:
        """Revoke the certificate in ``cert_file`` (issued to ``code``: a signing or a TLS client certificate) and
        re-issue the CRL; returns its serial. Refusal(CERT_UNTRUSTED) when this CA never issued it."""
        if not cert_file.is_file():
            raise Refusal(Reason.CERT_UNTRUSTED, f"no {what} was issued to {code} by this CA")
        serial = load_certs(cert_file.read_bytes())[0].serial_number
        certs = self._index()
        now = _now()
        for entry in certs:
            if entry.get("code") == code and entry.get("serial") == format(serial, "x") and not entry.get("revoked_at"):
                entry["revoked_at"] = now.isoformat()
        self._save_index(certs)
        self.write_crl()
        return serial

    def revoked(self) -> list[tuple[int, dt.datetime]]:
        out = []
        for entry in self._index():
            if entry.get("revoked_at"):
                out.append((int(str(entry["serial"]), 16), dt.datetime.fromisoformat(str(entry["revoked_at"]))))
        return out

    def write_crl(self, *, days: int = CRL_DAYS) -> x509.CertificateRevocationList:
        crl = make_crl(self.key, self.cert, self.revoked(), days=days)
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return crl


def load_trust(ca_pem: Path | str | bytes, crl_pem: Path | str | bytes | None = None
               ) -> tuple[tuple[x509.Certificate, ...], tuple[x509.CertificateRevocationList, ...]]:
    """Trust anchors and CRLs from PEM files (paths) or PEM bytes; a PEM file may hold several of each."""

    def read(src: Path | str | bytes) -> bytes:
        return src if isinstance(src, bytes) else Path(src).read_bytes()

    anchors = tuple(load_certs(read(ca_pem)))
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    if crl_pem is not None:
        data = read(crl_pem)
        blocks = [b"-----BEGIN X509 CRL-----" + part for part in data.split(b"-----BEGIN X509 CRL-----")[1:]]
        crls = tuple(load_crl(b) for b in blocks)
    return anchors, crls


# ---- the evidence log's signing certificate (contract section 5) --------------------------------------------------

#: Subject CN of the log's certificate; it has no UID (no agency can hold it), which is how a tree head's
#: verifier tells it from an agency's certificate (``axis.core.evidence.verify_sth``).
LOG_CN = "axis transparency log"
LOG_DIR = "log"
#: The log's entry in ``index.json`` (lower case: never an agency code, which is upper case).
LOG_CODE = "log"


def issue_log_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    digital_signature: bool = True,
) -> x509.Certificate:
    """The transparency log's certificate: CN ``axis transparency log``, O = axis, no UID; not a CA;
    digitalSignature only (``digital_signature=False`` makes a wrong one on purpose, for tests)."""
    start = not_before or (_now() - dt.timedelta(minutes=5))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, LOG_CN),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis"),
    ])
    return (
        _end_entity(ca_cert, subject, public_key, start, days)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, content_commitment=False,
                key_encipherment=not digital_signature, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, _hash_for(ca_key))
    )


def issue_log_certificate(ca_dir: Path | str, *, days: int = 365, algorithm: Algorithm = "ec") -> Issued:
    """Issue (or re-issue) the transparency log's signing key and certificate from the CA in ``ca_dir``:
    ``log/key.pem`` (0600) and ``log/cert.pem``, recorded in ``index.json`` under the code ``log`` (so that
    :meth:`CertificateAuthority.revoked` lists it once its ``revoked_at`` is set). EC P-256 by default."""
    if days < 1:
        raise PkiError("--days must be at least 1")
    ca = CertificateAuthority(ca_dir)
    key = new_key(algorithm)
    cert = issue_log_cert(ca.key, ca.cert, key.public_key(), days=days)
    d = ca.dir / LOG_DIR
    _write_private(d / "key.pem", key_pem(key))
    _write_public(d / "cert.pem", cert_pem(cert))
    certs = ca._index()
    certs.append({"code": LOG_CODE, "serial": format(cert.serial_number, "x"),
                  "not_after": cert.not_valid_after_utc.isoformat(), "revoked_at": None})
    ca._save_index(certs)
    return Issued(LOG_CODE, d / "key.pem", d / "cert.pem", cert.serial_number, cert.not_valid_after_utc)


# ---- transport certificates (contract section 6): TLS servers and agency clients ---------------------------------

#: ``<pki dir>/tls/server/{key,cert}.pem``: the certificate every endpoint and admin server presents.
SERVER_DIR = "tls/server"
#: ``<pki dir>/tls/clients/<CODE>/{key,cert}.pem``: an agency software's TLS client certificate (mutual TLS).
CLIENTS_DIR = "tls/clients"
#: The server certificate's entry in ``index.json`` (lower case: never an agency code).
SERVER_CODE = "tls-server"
#: ``index.json`` marks client certificates with ``"usage": "tls-client"`` (an agency's signing certificate has none).
TLS_CLIENT_USAGE = "tls-client"
#: ``<pki dir>/tls/broker/<user>/{key,cert}.pem``: a component's AMQPS client certificate (CN = its broker user).
BROKER_DIR = "tls/broker"
#: ``index.json`` marks broker client certificates with ``"usage": "broker-client"``.
BROKER_CLIENT_USAGE = "broker-client"
#: Subject alternative names every server certificate carries (``axis`` runs on the loopback by default).
DEFAULT_SERVER_NAMES = ("127.0.0.1", "localhost")


def _general_name(name: str) -> x509.GeneralName:
    import ipaddress

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _tls_key_usage(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> x509.KeyUsage:
    # digitalSignature for (EC)DHE handshakes; keyEncipherment too for an RSA key (RFC 5280 4.2.1.3, TLS 1.2 RSA kx)
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
        decipher_only=False,
    )


def server_names(hosts: Sequence[str] = ()) -> list[str]:
    """The names a server certificate is issued for: 127.0.0.1, localhost and ``hosts`` (deduplicated, in order;
    ``0.0.0.0``/``::`` — listen-on-all addresses, never a name a client uses — are left out)."""
    out: list[str] = []
    for name in (*DEFAULT_SERVER_NAMES, *hosts):
        name = name.strip().lower()
        if name and name not in ("0.0.0.0", "::") and name not in out:
            out.append(name)
    return out


def issue_server_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    hosts: Sequence[str] = (),
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A TLS server certificate: SANs for 127.0.0.1, localhost and ``hosts`` (IP addresses as iPAddress, the rest
    as dNSName), extendedKeyUsage serverAuth only, CN = the first host name, O = axis, no UID (no agency holds
    it: it cannot sign a document, nor authenticate as a client)."""
    names = server_names(hosts)
    start = not_before or (_now() - dt.timedelta(minutes=5))
    extra = names[len(DEFAULT_SERVER_NAMES):]
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, extra[0] if extra else "localhost"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "axis server"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis"),
    ])
    return (
        _end_entity(ca_cert, subject, public_key, start, days)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_tls_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .sign(ca_key, _hash_for(ca_key))
    )


def issue_client_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    code: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    name: str | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
    client_auth: bool = True,
) -> x509.Certificate:
    """An agency's TLS client certificate (mutual TLS): subject UID = ``code``, CN = ``name``, O = axis;
    extendedKeyUsage clientAuth only — the document verifier refuses it as a signer (a transport key does not
    sign official documents). ``client_auth=False`` makes a wrong one on purpose (serverAuth), for tests."""
    start = not_before or (_now() - dt.timedelta(minutes=5))
    subject = x509.Name([
        x509.NameAttribute(UID_OID, code),
        _cn(name or code),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "axis TLS client"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis"),
    ])
    usage = x509.ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else x509.ExtendedKeyUsageOID.SERVER_AUTH
    return _tls_client_cert(ca_key, ca_cert, subject, public_key, start, days, usage)


def _tls_client_cert(ca_key: PrivateKey, ca_cert: x509.Certificate, subject: x509.Name,
                     public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, start: dt.datetime, days: int,
                     usage: x509.ObjectIdentifier = x509.ExtendedKeyUsageOID.CLIENT_AUTH) -> x509.Certificate:
    """What an agency's and a component's TLS client certificates share: key usage for TLS, one extended usage."""
    return (
        _end_entity(ca_cert, subject, public_key, start, days)
        .add_extension(_tls_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, _hash_for(ca_key))
    )


def is_tls_certificate(cert: x509.Certificate) -> bool:
    """Whether ``cert`` is for TLS (its extendedKeyUsage names serverAuth or clientAuth): such a certificate
    authenticates a transport, never the signer of a document."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return x509.ExtendedKeyUsageOID.SERVER_AUTH in eku or x509.ExtendedKeyUsageOID.CLIENT_AUTH in eku


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What the endpoint servers need of a TLS peer's certificate (read once per connection): the agency it names
    (subject UID, None when absent or repeated), its serial (for the CRL) and whether it was issued for TLS client
    authentication (extendedKeyUsage clientAuth: an agency's signing certificate is not)."""

    uid: str | None
    serial: int
    client_auth: bool

    @classmethod
    def from_der(cls, der: bytes) -> ClientCertificate:
        cert = x509.load_der_x509_certificate(der)
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            client_auth = x509.ExtendedKeyUsageOID.CLIENT_AUTH in eku
        except x509.ExtensionNotFound:
            client_auth = False
        return cls(cert_uid(cert), cert.serial_number, client_auth)


def revoked_serials(ca_pem: bytes, crl_pem: bytes) -> frozenset[int]:
    """The serials a CRL lists, once its signature is checked against one of the CA certificates in ``ca_pem``
    (ValueError otherwise: an unsigned or foreign list revokes nothing and trusts nothing)."""
    anchors, crls = load_trust(ca_pem, crl_pem)
    out: set[int] = set()
    for crl in crls:
        issuer = next((a for a in anchors if a.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer_public_key(issuer)):
            raise ValueError("the CRL is not signed by the axis CA")
        out.update(r.serial_number for r in crl)
    return frozenset(out)


def _issue_tls(ca: CertificateAuthority, directory: Path, code: str, cert: x509.Certificate, key: PrivateKey,
               usage: str, certs: list[dict[str, object]]) -> Issued:
    _write_private(directory / "key.pem", key_pem(key))
    _write_public(directory / "cert.pem", cert_pem(cert))
    certs.append({"code": code, "serial": format(cert.serial_number, "x"), "usage": usage,
                  "not_after": cert.not_valid_after_utc.isoformat(), "revoked_at": None})
    return Issued(code, directory / "key.pem", directory / "cert.pem", cert.serial_number, cert.not_valid_after_utc)


def issue_server_certificate(ca_dir: Path | str, hosts: Sequence[str] = (), *, days: int = 365,
                             algorithm: Algorithm = "ec") -> Issued:
    """Issue (or re-issue) the TLS server key and certificate from the CA in ``ca_dir``: ``tls/server/key.pem``
    (0600) and ``tls/server/cert.pem`` for 127.0.0.1, localhost and ``hosts``; recorded in ``index.json`` under
    the code ``tls-server``. EC P-256 by default (the cheapest handshakes)."""
    if days < 1:
        raise PkiError("--days must be at least 1")
    ca = CertificateAuthority(ca_dir)
    key = new_key(algorithm)
    cert = issue_server_cert(ca.key, ca.cert, key.public_key(), hosts, days=days)
    certs = ca._index()
    issued = _issue_tls(ca, ca.dir / SERVER_DIR, SERVER_CODE, cert, key, "tls-server", certs)
    ca._save_index(certs)
    return issued


def client_dir(ca_dir: Path | str, code: str) -> Path:
    """Where an agency's TLS client key and certificate are (``<pki dir>/tls/clients/<CODE>``)."""
    return Path(ca_dir) / CLIENTS_DIR / code


def issue_client_certificates(ca_dir: Path | str, agencies: Sequence[tuple[str, str | None]], *, days: int = 365,
                              algorithm: Algorithm = "ec") -> list[Issued]:
    """Issue (or re-issue) TLS client keys and certificates to many (code, name) at once (one index write):
    ``tls/clients/<CODE>/key.pem`` (0600) and ``cert.pem``, subject UID = CODE, extendedKeyUsage clientAuth."""
    for code, _ in agencies:
        if not valid_code(code):
            raise PkiError(f"malformed agency code {code!r} (e.g. 000.00.00.G22 or H55.242)")
    if days < 1:
        raise PkiError("--days must be at least 1")
    ca = CertificateAuthority(ca_dir)
    certs = ca._index()
    out = []
    for code, name in agencies:
        key = new_key(algorithm)
        cert = issue_client_cert(ca.key, ca.cert, code, key.public_key(), name=name, days=days)
        out.append(_issue_tls(ca, client_dir(ca.dir, code), code, cert, key, TLS_CLIENT_USAGE, certs))
    ca._save_index(certs)
    return out


def revoke_client_certificate(ca_dir: Path | str, code: str) -> int:
    """Revoke the agency's current TLS client certificate and re-issue the CRL; returns the revoked serial.
    Refusal(CERT_UNTRUSTED) when this CA never issued one to ``code``."""
    if not valid_code(code):
        raise PkiError(f"malformed agency code {code!r}")
    ca = CertificateAuthority(ca_dir)
    return ca.revoke_file(code, client_dir(ca.dir, code) / "cert.pem", "TLS client certificate")


# ---- broker client certificates (contract section 6: AMQPS, SASL EXTERNAL) ----------------------------------------

_BROKER_USER = re.compile(r"[A-Za-z0-9_.@-]{1,128}")


def issue_broker_client_cert(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    user: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A component's AMQPS client certificate: CN = its broker user (RabbitMQ's ``ssl_cert_login_from =
    common_name`` makes it that user), OU "axis broker client", O = axis, extendedKeyUsage clientAuth only, no
    UID — it names no agency, so it neither signs documents nor passes an endpoint server's mutual TLS."""
    _check_broker_user(user)
    subject = x509.Name([
        _cn(user),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "axis broker client"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "axis"),
    ])
    return _tls_client_cert(ca_key, ca_cert, subject, public_key, not_before or (_now() - dt.timedelta(minutes=5)),
                            days)


def _check_broker_user(user: str) -> None:
    if not _BROKER_USER.fullmatch(user):
        raise PkiError(f"broker user {user!r}: letters, digits, '_', '.', '@', '-' only")


def broker_client_dir(certs_dir: Path | str, user: str) -> Path:
    """Where a broker user's key and certificate are (``<certs_dir>/<user>/{key,cert}.pem``)."""
    _check_broker_user(user)
    return Path(certs_dir) / user


def issue_broker_certificates(ca_dir: Path | str, users: Sequence[str], *, certs_dir: Path | str | None = None,
                              days: int = 365, algorithm: Algorithm = "ec", renew_within_days: int | None = None
                              ) -> list[Issued]:
    """Issue AMQPS client keys and certificates to broker ``users`` (one index write), in ``certs_dir`` (default
    ``<ca_dir>/tls/broker``). With ``renew_within_days``, a user whose certificate exists and stays valid longer
    than that is skipped (``axis up`` re-runs this at every start)."""
    if days < 1:
        raise PkiError("--days must be at least 1")
    ca = CertificateAuthority(ca_dir)
    base = Path(certs_dir) if certs_dir is not None else ca.dir / BROKER_DIR
    certs = ca._index()
    out = []
    for user in users:
        directory = broker_client_dir(base, user)
        if renew_within_days is not None and _valid_for(directory / "cert.pem", ca.cert, renew_within_days):
            continue
        key = new_key(algorithm)
        cert = issue_broker_client_cert(ca.key, ca.cert, user, key.public_key(), days=days)
        out.append(_issue_tls(ca, directory, user, cert, key, BROKER_CLIENT_USAGE, certs))
    if out:
        ca._save_index(certs)
    return out


def _valid_for(cert_file: Path, ca_cert: x509.Certificate, days: int) -> bool:
    """Whether ``cert_file`` holds a certificate from ``ca_cert`` valid for at least ``days`` more days."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - _now() > dt.timedelta(days=days)
