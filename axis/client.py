"""A small Python client for agency software talking to an axis endpoint server (contract section 4).

    from axis.client import Client
    with Client("https://127.0.0.1:8701", token, ca="axis-work/pki/ca.cert.pem") as c:
        sub = c.submit(Path("doc.edxml").read_bytes())       # {"id", "document_id", "recipients"}
        for item in c.inbox(unread=True):
            data = c.get(item["id"]); c.ack(item["id"]); c.send_status(item["id"], "03", "registered")
        c.statuses(sub["id"])
        d = c.directory(); later = c.directory(since=d["version"])   # directory sync (contract section 7)

``AsyncClient`` has the same methods as coroutines. A refusal (problem+json) raises :class:`AxisError`
carrying ``reason`` (contract section 2), ``status`` and ``detail``.

TLS (contract section 6): ``ca`` is the axis CA the server's certificate is checked against (connections.json's
``ca``; without it, the system's trust store); ``cert``/``key`` are the agency's TLS client certificate
(connections.json's ``tls_cert``/``tls_key``) for servers with ``client_auth``. :meth:`Client.from_connections`
takes all of it from connections.json.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from axis.core.reasons import Reason
from axis.core.tlsconfig import client_context


class AxisError(Exception):
    """The endpoint server refused the request (or failed): HTTP status, reason code, detail."""

    def __init__(self, status: int, reason: str | None, detail: str) -> None:
        super().__init__(f"{status} {reason or 'error'}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail

    @property
    def reason_code(self) -> Reason | None:
        try:
            return Reason(self.reason) if self.reason else None
        except ValueError:
            return None


def _check(r: httpx.Response) -> httpx.Response:
    if r.status_code < 400:
        return r
    try:
        body = r.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise AxisError(r.status_code, body.get("reason"), str(body.get("detail") or r.text[:500]))


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PathLike = str | Path


def _since(since: int | None) -> dict[str, int]:
    return {} if since is None else {"since": since}


def tls_verify(ca: PathLike | None = None, cert: PathLike | None = None, key: PathLike | None = None
               ) -> ssl.SSLContext | bool:
    """httpx's ``verify``: an SSLContext trusting ``ca`` (and presenting ``cert``/``key``), or True (the system's
    trust store) when neither is given."""
    if ca is None and cert is None:
        return True
    return client_context(ca, cert, key)


def _kwargs(ca: PathLike | None, cert: PathLike | None, key: PathLike | None, kwargs: dict[str, Any]
            ) -> dict[str, Any]:
    if "verify" not in kwargs:
        kwargs["verify"] = tls_verify(ca, cert, key)
    return kwargs


def agency_connection(connections: PathLike | Mapping[str, Any], code: str) -> dict[str, Any]:
    """``Client``'s arguments for agency ``code`` from connections.json (a path or its parsed object): endpoint,
    token, ca and, when issued, the TLS client certificate (cert, key)."""
    raw = orjson.loads(Path(connections).read_bytes()) if isinstance(connections, str | Path) else connections
    agency = next((a for a in raw.get("agencies") or [] if isinstance(a, Mapping) and a.get("code") == code), None)
    if agency is None:
        raise KeyError(f"agency {code} is not in connections.json")
    return {"endpoint": agency["endpoint"], "token": agency["token"], "ca": raw.get("ca"),
            "cert": agency.get("tls_cert"), "key": agency.get("tls_key")}


class Client:
    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0, ca: PathLike | None = None,
                 cert: PathLike | None = None, key: PathLike | None = None, **kwargs: Any) -> None:
        self._http = httpx.Client(base_url=endpoint.rstrip("/"), headers=_headers(token), timeout=timeout,
                                  **_kwargs(ca, cert, key, kwargs))

    @classmethod
    def from_connections(cls, connections: PathLike | Mapping[str, Any], code: str, **kwargs: Any) -> Client:
        """A client acting as agency ``code`` of connections.json (endpoint, token, CA, client certificate)."""
        return cls(**agency_connection(connections, code), **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, data: bytes) -> dict[str, Any]:
        r = self._http.post("/v1/documents", content=data, headers={"content-type": "application/xml"})
        return _check(r).json()

    def inbox(self, *, unread: bool = False, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        r = self._http.get("/v1/inbox", params={"unread": str(unread).lower(), "limit": limit, "offset": offset})
        return _check(r).json()["items"]

    def iter_inbox(self, *, unread: bool = False, page: int = 500) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            items = self.inbox(unread=unread, limit=page, offset=offset)
            yield from items
            if len(items) < page:
                return
            offset += len(items)

    def get(self, doc_id: str) -> bytes:
        return _check(self._http.get(f"/v1/documents/{doc_id}")).content

    def ack(self, doc_id: str) -> None:
        _check(self._http.post(f"/v1/documents/{doc_id}/ack"))

    def send_status(self, doc_id: str, code: str, description: str = "") -> dict[str, Any]:
        r = self._http.post(f"/v1/documents/{doc_id}/status", json={"code": code, "description": description})
        return _check(r).json()

    def statuses(self, doc_id: str) -> list[dict[str, Any]]:
        return _check(self._http.get(f"/v1/documents/{doc_id}/status")).json()["items"]

    def directory(self, since: int | None = None) -> dict[str, Any]:
        """The directory (contract section 7): ``{"version", "agencies": [{"code", "name", "kind", "active",
        "aliases"}], "deleted": [codes], "full"}`` — with ``since`` (the version last seen), only what changed
        after it (``full`` is true when the answer lists everything instead)."""
        return _check(self._http.get("/v1/directory", params=_since(since))).json()

    def health(self) -> dict[str, Any]:
        return _check(self._http.get("/healthz")).json()


class AsyncClient:
    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0, ca: PathLike | None = None,
                 cert: PathLike | None = None, key: PathLike | None = None, **kwargs: Any) -> None:
        self._http = httpx.AsyncClient(base_url=endpoint.rstrip("/"), headers=_headers(token), timeout=timeout,
                                       **_kwargs(ca, cert, key, kwargs))

    @classmethod
    def from_connections(cls, connections: PathLike | Mapping[str, Any], code: str, **kwargs: Any) -> AsyncClient:
        """A client acting as agency ``code`` of connections.json (endpoint, token, CA, client certificate)."""
        return cls(**agency_connection(connections, code), **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, data: bytes) -> dict[str, Any]:
        r = await self._http.post("/v1/documents", content=data, headers={"content-type": "application/xml"})
        return _check(r).json()

    async def inbox(self, *, unread: bool = False, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        r = await self._http.get("/v1/inbox", params={"unread": str(unread).lower(), "limit": limit,
                                                      "offset": offset})
        return _check(r).json()["items"]

    async def get(self, doc_id: str) -> bytes:
        return _check(await self._http.get(f"/v1/documents/{doc_id}")).content

    async def ack(self, doc_id: str) -> None:
        _check(await self._http.post(f"/v1/documents/{doc_id}/ack"))

    async def send_status(self, doc_id: str, code: str, description: str = "") -> dict[str, Any]:
        r = await self._http.post(f"/v1/documents/{doc_id}/status", json={"code": code, "description": description})
        return _check(r).json()

    async def statuses(self, doc_id: str) -> list[dict[str, Any]]:
        r = await self._http.get(f"/v1/documents/{doc_id}/status")
        return _check(r).json()["items"]

    async def directory(self, since: int | None = None) -> dict[str, Any]:
        """As :meth:`Client.directory`."""
        return _check(await self._http.get("/v1/directory", params=_since(since))).json()

    async def health(self) -> dict[str, Any]:
        return _check(await self._http.get("/healthz")).json()
