"""What the VPCP SDK (SDKVXP 2.0.1) puts on the wire, rebuilt from the shared reference ``vpcp-sdk.md`` (sections
3-5) for tests: one :class:`SdkService` is one SDK service object (``KnobstickServiceImp`` / ``AgencyServiceImp``):
its parameter map starts with ``timestamp`` and ``systemid``, each call adds ``Content-Type`` and the keys of its
JSON argument, and **nothing is ever removed** — later calls carry the keys of earlier ones, as the SDK's do.

The headers are computed independently of :mod:`endpoints.vxp.protocol` (so a bug there cannot hide in both)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import httpx


def sdk_timestamp(now: datetime | None = None) -> str:
    """``ddMMyyyy'T'HHmmss+SSSS``: SSSS is milliseconds, not a zone (fixed when the service object is built)."""
    t = now or datetime.now()
    return t.strftime("%d%m%YT%H%M%S") + f"+{t.microsecond // 1000:04d}"


def java_hex_sha256(data: bytes) -> str:
    """The SDK's hash-file: ``Integer.toHexString(b & 0xff)`` per byte, concatenated (no zero padding)."""
    return "".join(hex(b)[2:] for b in hashlib.sha256(data).digest())


class SdkService:
    def __init__(self, client: httpx.AsyncClient, endpoint: str, system_id: str, secret: str) -> None:
        self.client = client
        self.endpoint = endpoint.rstrip("/")
        self.secret = secret
        self.params: dict[str, str] = {"timestamp": sdk_timestamp(), "systemid": system_id}
        self.last: httpx.Response | None = None

    def headers(self) -> dict[str, str]:
        signed = {f"XroadVnpt-{k}": v for k, v in self.params.items()}
        sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)  # gson, no HTML escaping
        mac = hmac.new(self.secret.encode("utf-8"), sign_header.encode("utf-8"), hashlib.sha256).hexdigest()
        return {**signed, "Content-Type": self.params["Content-Type"], "XroadVnpt-sign-header": sign_header,
                "XroadVnpt-sign-header-key": ";".join(self.params), "XroadVnpt-hash-header": mac,
                "XroadVnpt-version": "3.0.201608", "User-Agent": "JAVASDKAgent/1.0.0 XRoad/VPCP"}

    async def _apache(self, method: str, path: str, arg: dict[str, str], body: bytes) -> httpx.Response:
        self.params["Content-Type"] = "application/json"
        self.params.update(arg)
        headers = {**self.headers(), "Accept-Encoding": "gzip,deflate"}
        if body:
            headers["Expect"] = "100-continue"
        self.last = await self.client.request(method, self.endpoint + path, headers=headers, content=body)
        return self.last

    async def _json(self, path: str, arg: dict[str, str], body: bytes = b"") -> dict[str, Any]:
        r = await self._apache("POST", path, arg, body)
        parsed: dict[str, Any] = r.json()  # a non-JSON body would be a bug the SDK hides (reference section 5)
        for field in ("status", "ErrorCode", "ErrorDesc"):
            assert isinstance(parsed.get(field), str), (path, parsed)  # strings, or the SDK drops the answer
        return parsed

    # -- KnobstickServiceImp ---------------------------------------------------------------------------------------
    async def send_edoc(self, data: bytes, *, messagetype: str = "edoc", sender: str | None = None,
                        to: str | None = None) -> dict[str, Any]:
        """sendEdoc: HttpURLConnection, the file's bytes + CRLF, octet-stream, hash-file; answer read as ASCII."""
        self.params["Content-Type"] = "application/octet-stream"
        self.params.update({"from": sender or self.params["systemid"], "servicetype": "eDoc",
                            "messagetype": messagetype})
        if to is not None:
            self.params["to"] = to
        self.params["hash-file"] = java_hex_sha256(data)
        self.last = await self.client.post(self.endpoint + "/sendEdoc", headers=self.headers(), content=data + b"\r\n")
        parsed: dict[str, Any] = json.loads(self.last.content.decode("ascii"))
        for field in ("status", "ErrorCode", "ErrorDesc", "DocId"):
            assert isinstance(parsed.get(field), str), parsed
        return parsed

    async def get_received_edoc_list(self, messagetype: str = "edoc") -> dict[str, Any]:
        return await self._json("/getReceivedEdocList", {"servicetype": "eDoc", "messagetype": messagetype})

    async def get_sent_edoc_list(self, doc_id: str = "", messagetype: str = "edoc") -> dict[str, Any]:
        return await self._json("/getSentEdocList", {"servicetype": "eDoc", "messagetype": messagetype,
                                                     "docId": doc_id})

    async def get_edoc(self, doc_id: str, file_path: str = "edocs") -> dict[str, Any]:
        return await self._json("/getEdoc", {"docId": doc_id, "filePath": file_path}, b"{}")

    async def download_edoc(self, doc_id: str, file_path: str = "edocs") -> httpx.Response:
        return await self._apache("GET", "/downloadEdoc", {"docId": doc_id, "filePath": file_path}, b"")

    async def count_receive_edoc(self) -> dict[str, Any]:
        return await self._json("/countReceiveEdoc", {}, b"{}")

    async def count_receive_status(self) -> dict[str, Any]:
        return await self._json("/countReceiveStatus", {}, b"{}")

    async def update_status(self, doc_id: str, status: str) -> dict[str, Any]:
        return await self._json("/updateStatus", {"docId": doc_id, "status": status}, b"{}")

    # -- AgencyServiceImp ------------------------------------------------------------------------------------------
    async def get_agencies_list(self) -> dict[str, Any]:
        return await self._json("/getAgenciesList", {})

    async def get_agencies_list_qd20(self) -> dict[str, Any]:
        return await self._json("/getAgenciesListQD20", {"level": "1"})

    async def get_synchronize_unit(self) -> dict[str, Any]:
        return await self._json("/getSynchronizeUnit", {})

    async def register_agency(self, data: dict[str, str]) -> dict[str, Any]:
        return await self._json("/registerAgency", {}, json.dumps(data).encode())

    async def delete_agency(self, code: str) -> dict[str, Any]:
        return await self._json("/deleteAgency", {"AgencyCode": code}, b"{}")
