"""The agency lifecycle on a RUNNING axis: add, retire, rename, re-certify an agency without restarting anything.

Run by the ``axis up`` supervisor, asked through its control socket (:mod:`axis.ops.control`) by the admin app
(:mod:`axis.admin.agencies`, ``axis agency …``), like a live move: :mod:`axis.ops.agencyplan` checks the request
against the configuration (pure), then the steps below change the PKI and ``config.yaml`` and every process picks
the file up by a hot reload (SIGHUP + acknowledgement, :mod:`axis.config.reload`; the machinery of
:class:`axis.ops.livemove.LiveMove`). Requests are handled one at a time (the control socket serializes them).

- **add** ``{"op": "agency-add", "code", "name", "server", "kind"?, "port"?, "algorithm"?, "days"?,
  "holds_key"?}``: the CA issues the agency's signing certificate (``pki/agencies/<CODE>/``) and, with TLS, its
  TLS client certificate (``pki/tls/clients/<CODE>/``); a new token is made (only its SHA-256 goes into the
  configuration; the token itself is in the answer and in ``connections.json``); ``config.yaml`` gets the agency
  (and the server when it is new: RabbitMQ gets its queue, a new host process starts and answers ``/healthz``);
  every host reloads (the agency's server now takes its token, every server's directory lists it), then every
  router (documents to it are routed from the next batch on). A failed reload puts the old file back.
- **retire** ``{"op": "agency-retire", "agency", "revoke"?}``: ``active: false`` in ``config.yaml``; every router
  reloads first (documents from it are refused ``FORBIDDEN``, to it ``UNKNOWN_RECIPIENT``, each naming the
  retirement), then every host (its server refuses its submissions at the door). Its token still reads its inbox
  and acks what it collects; deliveries routed before the retirement are still stored. ``revoke``: its signing
  certificate is also revoked (the CRL is re-issued before the reloads) — then documents it signed earlier no longer
  verify, so it is off by default.
- **rename** ``{"op": "agency-rename", "agency", "code", "name"?, "algorithm"?, "days"?}``: a signing
  certificate for the new code (the verifier requires its subject UID to be the sender's code) and a TLS client
  certificate when it had one; the configuration is rewritten by :func:`axis.config.renames.rename_agency` (the old
  code becomes an alias: envelopes addressed to it still arrive); hosts reload, then routers. Its token stays.
- **rotate-cert** ``{"op": "agency-rotate-cert", "agency", "algorithm"?, "days"?}``: a new key and signing
  certificate replace the files the configuration names (so no path changes); the previous ones are kept in
  ``pki/agencies/<CODE>/previous/<serial>.{key,cert}.pem`` and the previous certificate is NOT revoked: it stays
  valid until it expires, so documents signed with either key verify (both chain to the axis CA and carry the
  agency's UID: the trust store is the CA, not a pinned certificate). The agency's server reloads (it signs
  unsigned submissions with the new key from then on).

Answers ``(200, {...})`` or a refusal ``(status, {"reason", "detail"})`` like a move.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from axis.config import Config, ConfigError, connections_for, load_config, new_token, write_connections
from axis.config.agencies import Snapshot, add_agency, retire_agency
from axis.config.model import hash_token
from axis.core import pki
from axis.core.reasons import Reason, Refusal
from axis.ops.agencyplan import AddPlan, RenamePlan, RetirePlan, RotatePlan, check_request
from axis.ops.livemove import LiveMove, MoveError

if TYPE_CHECKING:
    from axis.ops.up import Running


def _fingerprint(cert_path: Path) -> str:
    """SHA-256 (hex) of the certificate's DER: what the evidence leaf of the action names."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(pki.load_certs(cert_path.read_bytes())[0].public_bytes(Encoding.DER)).hexdigest()


def _cert_json(issued: pki.Issued) -> dict[str, Any]:
    return {"serial": format(issued.serial, "x"), "not_after": issued.not_after.isoformat(),
            "key": str(issued.key_path), "cert": str(issued.cert_path), "sha256": _fingerprint(issued.cert_path)}


class AgencyLifecycle:
    """The supervisor's side of ``axis agency`` (module docstring); ``handle`` serves the control socket."""

    def __init__(self, run: Running, mover: LiveMove | None = None) -> None:
        self.run = run
        self.mover = mover or LiveMove(run)

    @property
    def path(self) -> Path:
        assert self.run.config.path is not None
        return self.run.config.path

    def handle(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        t0 = time.monotonic()
        try:
            plan = check_request(load_config(self.path), request)
            if isinstance(plan, AddPlan):
                answer = self.add(plan)
            elif isinstance(plan, RetirePlan):
                answer = self.retire(plan)
            elif isinstance(plan, RenamePlan):
                answer = self.rename(plan)
            else:
                answer = self.rotate(plan)
        except MoveError as exc:
            return exc.status, exc.body()
        answer["seconds"] = round(time.monotonic() - t0, 3)
        return 200, answer

    # -- helpers --------------------------------------------------------------------------------------------------
    def _ca(self, config: Config) -> pki.CertificateAuthority:
        if config.pki.ca is None:
            raise MoveError(409, Reason.CERT_UNTRUSTED, "the configuration names no pki.ca: nothing can be issued")
        try:
            return pki.CertificateAuthority(config.pki.ca.parent)
        except pki.PkiError as exc:
            raise MoveError(409, Reason.CERT_UNTRUSTED, f"{exc} (the CA key must be beside pki.ca)") from None

    def _hosts(self) -> list[str]:
        return list(self.run.hosts)

    def _apply(self, original: Snapshot, steps: list[tuple[list[str], str]], spawned: str | None = None) -> None:
        """Reload ``steps`` in order; on a failure put the files of ``original`` back, reload what was reloaded, and
        raise."""
        done: list[str] = []
        try:
            for names, what in steps:
                self.mover._reload(names, what)
                done += names
        except MoveError as exc:
            original.restore()
            if spawned is not None:
                self.run.stop_child(spawned)
                done = [n for n in done if n != spawned]
            try:
                self.mover._reload(done, "roll back")
            except MoveError as again:
                self.run.log(f"agency roll back: {again.detail}")
            raise MoveError(exc.status, exc.reason, f"{exc.detail}; the change was undone") from None

    def _write(self, edit: Callable[[], Config]) -> Config:
        try:
            return edit()
        except ConfigError as exc:
            raise MoveError(409, Reason.FORBIDDEN, str(exc)) from None

    def _connections(self, config: Config, tokens: dict[str, str] | None = None,
                     renamed: tuple[str, str] | None = None) -> None:
        path = self.run.work_dir / "connections.json"
        known: dict[str, Any] = orjson.loads(path.read_bytes()) if path.is_file() else {}
        agencies = [dict(a) for a in known.get("agencies", []) if isinstance(a, dict)]
        if renamed is not None:  # its token and TLS client files follow it to its new code
            for a in agencies:
                if a.get("code") == renamed[0]:
                    a["code"] = renamed[1]
                    a.pop("tls_cert", None)
                    a.pop("tls_key", None)
        for code, token in (tokens or {}).items():
            agencies.append({"code": code, "token": token})
        self.run.connections_path = write_connections(self.run.work_dir,
                                                      connections_for(config, {**known, "agencies": agencies}))
        self.run.config = config

    # -- the operations -------------------------------------------------------------------------------------------
    def add(self, plan: AddPlan) -> dict[str, Any]:
        config = load_config(self.path)
        ca = self._ca(config)
        try:
            issued = ca.issue(plan.code, name=plan.name, days=plan.cert.days, algorithm=plan.cert.algorithm)  # type: ignore[arg-type]
            client = (pki.issue_client_certificates(ca.dir, [(plan.code, plan.name)], days=plan.cert.days)[0]
                      if config.tls.enabled else None)
        except pki.PkiError as exc:
            raise MoveError(422, Reason.SCHEMA_INVALID, str(exc)) from None
        token = new_token()
        original = Snapshot.take(self.path)
        try:
            final = self._write(lambda: add_agency(
                self.path, plan.code, plan.name, plan.server, token_sha256=hash_token(token), key=issued.key_path,
                cert=issued.cert_path, holds_key=plan.holds_key, kind=plan.kind, port=plan.port))
            spawned = None
            if plan.new_server:
                try:
                    spawned = self.mover._ensure_hosted(plan.server)
                except MoveError as exc:
                    original.restore()
                    raise MoveError(exc.status, exc.reason, f"{exc.detail}; the agency was not added") from None
            self._apply(original, [(self._hosts(), "reload the hosts (add)"),
                                   (self.run.router_names(), "reload the routers (add)")], spawned)
        except MoveError:  # not added: the certificates issued for it must not stay valid
            self._revoke_unused(ca, plan.code, client is not None)
            raise
        self._connections(final, {plan.code: token})
        server = final.server(plan.server)
        return {"action": "agency-add", "agency": plan.code, "name": plan.name, "server": plan.server,
                "kind": server.kind, "endpoint": server.url, "new_server": plan.new_server, "token": token,
                "certificate": _cert_json(issued),
                **({"tls_cert": str(client.cert_path), "tls_key": str(client.key_path)} if client else {})}

    def _revoke_unused(self, ca: pki.CertificateAuthority, code: str, client: bool) -> None:
        """Revoke the certificates issued for an agency that was not added after all (best effort, logged)."""
        try:
            ca.revoke(code)
            if client:
                pki.revoke_client_certificate(ca.dir, code)
        except (Refusal, pki.PkiError, OSError) as exc:
            self.run.log(f"agency add {code}: revoking its unused certificates failed: {exc}")

    def retire(self, plan: RetirePlan) -> dict[str, Any]:
        config = load_config(self.path)
        original = Snapshot.take(self.path)
        final = self._write(lambda: retire_agency(self.path, plan.code))
        revoked = None
        if plan.revoke:
            try:
                revoked = self._ca(config).revoke(plan.code)
            except (Refusal, MoveError) as exc:
                original.restore()
                raise MoveError(409, Reason.CERT_UNTRUSTED, getattr(exc, "detail", str(exc))) from None
        self._apply(original, [(self.run.router_names(), "reload the routers (retire)"),
                               (self._hosts(), "reload the hosts (retire)")])
        self._connections(final)
        return {"action": "agency-retire", "agency": plan.code, "server": plan.server,
                "retired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "revoked_serial": format(revoked, "x") if revoked is not None else None}

    def rename(self, plan: RenamePlan) -> dict[str, Any]:
        from axis.config.renames import rename_agency

        config = load_config(self.path)
        ca = self._ca(config)
        old_agency = config.agency(plan.old)
        assert old_agency is not None
        had_client = (pki.client_dir(ca.dir, plan.old) / "cert.pem").is_file()
        name = plan.name or old_agency.name
        try:
            issued = ca.issue(plan.new, name=name, days=plan.cert.days, algorithm=plan.cert.algorithm)  # type: ignore[arg-type]
            client = (pki.issue_client_certificates(ca.dir, [(plan.new, name)], days=plan.cert.days)[0]
                      if had_client and config.tls.enabled else None)
        except pki.PkiError as exc:
            raise MoveError(422, Reason.SCHEMA_INVALID, str(exc)) from None
        original = Snapshot.take(self.path)
        final = self._write(lambda: rename_agency(self.path, plan.old, plan.new, name=plan.name,
                                                  key=issued.key_path, cert=issued.cert_path))
        self._apply(original, [(self._hosts(), "reload the hosts (rename)"),
                               (self.run.router_names(), "reload the routers (rename)")])
        self._connections(final, renamed=(plan.old, plan.new))
        return {"action": "agency-rename", "agency": plan.new, "former": plan.old, "server": plan.server,
                "certificate": _cert_json(issued),
                **({"tls_cert": str(client.cert_path), "tls_key": str(client.key_path)} if client else {})}

    def rotate(self, plan: RotatePlan) -> dict[str, Any]:
        config = load_config(self.path)
        ca = self._ca(config)
        agency = config.agency(plan.code)
        assert agency is not None
        cert_path = agency.cert or ca.agency_dir(plan.code) / "cert.pem"
        key_path = agency.key or ca.agency_dir(plan.code) / "key.pem"
        previous = None
        if cert_path.is_file():
            old = pki.load_certs(cert_path.read_bytes())[0]
            serial = format(old.serial_number, "x")
            archive = ca.agency_dir(plan.code) / "previous"
            archive.mkdir(parents=True, exist_ok=True)
            (archive / f"{serial}.cert.pem").write_bytes(cert_path.read_bytes())
            if key_path.is_file():
                kept = archive / f"{serial}.key.pem"
                kept.write_bytes(key_path.read_bytes())
                kept.chmod(0o600)
            previous = {"serial": serial, "not_after": old.not_valid_after_utc.isoformat(),
                        "cert": str(archive / f"{serial}.cert.pem"), "valid_until": old.not_valid_after_utc.isoformat()}
        try:
            issued = ca.issue(plan.code, name=agency.name, days=plan.cert.days, algorithm=plan.cert.algorithm)  # type: ignore[arg-type]
        except pki.PkiError as exc:
            raise MoveError(422, Reason.SCHEMA_INVALID, str(exc)) from None
        if issued.cert_path.resolve() != cert_path.resolve():  # the configuration names other files: fill them
            pki._write_private(key_path, issued.key_path.read_bytes())
            pki._write_public(cert_path, issued.cert_path.read_bytes())
        host = self.run.host_of(plan.server)
        self.mover._reload([host] if host else [], "reload the agency's server (rotate-cert)")
        return {"action": "agency-rotate-cert", "agency": plan.code, "server": plan.server,
                "certificate": {**_cert_json(issued), "key": str(key_path), "cert": str(cert_path)},
                "previous": previous}
