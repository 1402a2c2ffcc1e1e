"""The simulator's agencies that speak the VPCP SDK's protocol (``--protocol vxp|mixed``): their documents and
statuses go through ``/vxp/sendEdoc`` (the headers agency software's SDK sends, :mod:`axis.core.vpcp`) instead of
``POST /v1/documents`` and ``POST /v1/documents/{id}/status``. Reads (inboxes, the sender's statuses) stay on ``/v1``:
the SDK's list has no DocumentId, which the simulator's tally needs.

The SDK's answers are turned back into the ``/v1`` shape the driver judges: ``OK`` → 202 ``{"id": DocId}``;
``FAIL`` → the HTTP status of its reason code with ``{"reason": ErrorCode, "detail": ErrorDesc}``. Which agencies
speak it: all (``vxp``), none (``v1``) or every other one in code order (``mixed``) — an agency's software uses one
protocol, as in real life.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from axis.core import envelope
from axis.core.reasons import Reason, http_status
from axis.core.vpcp import DOC_TYPES, STATUS, sdk_body, sdk_hash_file, sdk_timestamp, sign_headers
from axis.sim.api import Answer, Api
from axis.sim.connections import Connections
from axis.sim.http import Pool

PROTOCOLS = ("v1", "vxp", "mixed")
_DOC_TYPE = re.compile(rb"BussinessDocType>\s*([0-3])\s*<")
_KINDS = {str(t).encode(): kind for kind, t in DOC_TYPES.items()}


def vxp_agencies(conns: Connections, protocol: str) -> dict[str, str]:
    """token → agency code of the agencies that speak /vxp under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    codes = sorted(conns.agencies)
    chosen = [] if protocol == "v1" else codes if protocol == "vxp" else codes[::2]
    return {conns.agencies[c].token: c for c in chosen}


def message_type(data: bytes) -> str:
    """The messagetype of one of the simulator's own documents (its BussinessDocType; ``edoc`` when absent)."""
    m = _DOC_TYPE.search(data)
    return _KINDS.get(m.group(1), "edoc") if m else "edoc"


def v1_answer(a: Answer) -> Answer:
    """The SDK's answer as the driver reads a /v1 one."""
    body = a.body if isinstance(a.body, dict) else {}
    if a.ok and body.get("status") == "OK":
        return Answer(202, {"id": body.get("DocId")})
    code = str(body.get("ErrorCode") or "")
    try:
        status = http_status(Reason(code))
    except ValueError:
        status = a.status if a.status >= 400 else 400
    return Answer(status, {"reason": code or None, "detail": body.get("ErrorDesc", a.body)})


class VxpApi(Api):
    """:class:`axis.sim.api.Api` whose submissions and statuses go through /vxp for the agencies in ``speakers``."""

    def __init__(self, pool: Pool, conns: Connections, speakers: Mapping[str, str], **kw: Any) -> None:
        super().__init__(pool, conns, **kw)
        self.speakers = dict(speakers)
        self._timestamp = sdk_timestamp()  # the SDK fixes it when its service object is built

    async def _send(self, endpoint: str, token: str, data: bytes, messagetype: str) -> Answer:
        code = self.speakers[token]
        params = {"timestamp": self._timestamp, "systemid": code, "Content-Type": "application/octet-stream",
                  "from": code, "servicetype": "eDoc", "messagetype": messagetype, "hash-file": sdk_hash_file(data)}
        headers = {**sign_headers(params, token), "Content-Type": "application/octet-stream"}
        # no bearer token: the MAC is the credential; idempotent like POST /v1/documents (one row per DocumentId)
        a = await self.call("POST", f"{endpoint}/vxp/sendEdoc", token, idempotent=True, bearer=False,
                            content=sdk_body(data), headers=headers)
        return v1_answer(a)

    async def submit(self, endpoint: str, token: str, data: bytes) -> Answer:
        if token not in self.speakers:
            return await super().submit(endpoint, token, data)
        return await self._send(endpoint, token, data, message_type(data))

    async def post_status(self, endpoint: str, token: str, rid: str, code: str, description: str, *,
                          sender: str | None = None, document_id: str | None = None) -> Answer:
        if token not in self.speakers or not sender or not document_id:
            return await super().post_status(endpoint, token, rid, code, description)
        status = envelope.new_status(self.speakers[token], envelope.ResponseFor(sender, document_id), code,
                                     description)
        return await self._send(endpoint, token, envelope.build(status), STATUS)
