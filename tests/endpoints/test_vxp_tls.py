"""The VPCP SDK facade over HTTPS with ``client_auth: required`` (a real uvicorn server as endpoints/host.py runs
it, no broker): the SDK's MAC is not enough without the agency's TLS client certificate, exactly as a bearer token
is not on /v1 — and the refusal is the SDK's FAIL shape."""

from __future__ import annotations

from typing import Any

from tests.integration.test_tls import G01, G03, Serve
from tests.integration.test_tls import serve as serve
from tests.support.vpcp_sdk import SdkService


async def test_client_certificate_required_for_vxp(serve: Serve) -> None:
    s = await serve("required")

    async def received(cert: tuple[str, str] | None) -> dict[str, Any]:
        """G01's getReceivedEdocList over HTTPS, presenting ``cert`` (None: no certificate at all)."""
        async with s.client(cert=cert, token_of=G01) as client:
            return await SdkService(client, f"{s.url}/vxp", G01, s.agencies[G01]["token"]).get_received_edoc_list()

    own = (s.agencies[G01]["tls_cert"], s.agencies[G01]["tls_key"])
    other = (s.agencies[G03]["tls_cert"], s.agencies[G03]["tls_key"])
    assert (await received(own))["status"] == "OK"
    for cert, words in ((other, "not your agency's"), (None, "requires your agency's TLS client certificate")):
        refused = await received(cert)
        assert (refused["status"], refused["ErrorCode"]) == ("FAIL", "UNAUTHORIZED"), refused
        assert words in refused["ErrorDesc"]
