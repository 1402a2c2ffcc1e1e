"""Moving an agency LIVE (axis.ops.livemove): a whole axis in real processes (axis.ops.up.start) on its own RabbitMQ
vhost; documents keep flowing while the admin app moves G03 from the shared server to a new dedicated server.
Every document must be in its recipients' inboxes exactly once and the axis's counters must be exact."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from axis.config import generate_workdir, load_config
from axis.config.reload import read_ack
from axis.core import envelope
from axis.core.tlsconfig import client_context
from tests.integration.conftest import G01, G03, G22
from tests.support.testing import free_port_block

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
XML = {"content-type": "application/xml"}


class Agency:
    def __init__(self, entry: dict[str, Any]) -> None:
        self.code = entry["code"]
        self.endpoint = entry["endpoint"]
        self.headers = {"Authorization": f"Bearer {entry['token']}"}


async def submit(http: httpx.AsyncClient, a: Agency, data: bytes) -> str:
    for _ in range(20):  # 503 (broker busy) may be retried; anything else is a failure of the test
        r = await http.post(f"{a.endpoint}/v1/documents", content=data, headers={**XML, **a.headers})
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return str(r.json()["document_id"])
        await asyncio.sleep(0.2)
    raise AssertionError("the endpoint stayed unavailable")


async def inbox(http: httpx.AsyncClient, a: Agency) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        r = await http.get(f"{a.endpoint}/v1/inbox", params={"limit": 1000, "offset": len(items)}, headers=a.headers)
        assert r.status_code == 200, r.text
        page = r.json()["items"]
        items += page
        if len(page) < 1000:
            return items


async def scenario(conn: dict[str, Any], admin: str, admin_token: str, log: list[str]) -> dict[str, Any]:
    agencies = {a["code"]: Agency(a) for a in conn["agencies"]}
    g22, g03 = agencies[G22], agencies[G03]
    admin_headers = {"Authorization": f"Bearer {admin_token}"}
    to_g03_g01: list[str] = []  # sent by G22 to G03 and G01
    from_g03: list[str] = []  # sent by G03 (the moving agency) to G22
    async with httpx.AsyncClient(timeout=180, verify=client_context(conn["ca"])) as http:  # HTTPS: the axis CA
        # bad requests first: nothing moves
        r = await http.post(f"{admin}/admin/agencies/000.00.00.X99/move", json={"server": "x"}, headers=admin_headers)
        assert r.status_code == 404 and r.json()["reason"] == "UNKNOWN_RECIPIENT", r.text
        r = await http.post(f"{admin}/admin/agencies/{G01}/move", json={"server": "d1"}, headers=admin_headers)
        assert r.status_code == 409 and r.json()["reason"] == "FORBIDDEN", r.text  # d1 is G22's dedicated server
        r = await http.post(f"{admin}/admin/agencies/{G03}/move", json={"server": "Bad Id"}, headers=admin_headers)
        assert r.status_code == 422 and r.json()["reason"] == "SCHEMA_INVALID", r.text
        r = await http.post(f"{admin}/admin/agencies/{G03}/move", json={"server": "d-g03"})
        assert r.status_code == 401
        with socket.socket() as taken:  # the new server cannot start: the move is undone, nothing changed
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            r = await http.post(f"{admin}/admin/agencies/{G03}/move", headers=admin_headers,
                                json={"server": "d-bad", "port": taken.getsockname()[1]})
        assert r.status_code == 500 and "undone" in r.json()["detail"], r.text
        log.append(r.text)

        stop = asyncio.Event()

        async def g22_sends() -> None:  # keeps going all through the move
            while not stop.is_set():
                i = len(to_g03_g01)
                doc = envelope.build(envelope.new_document(G22, [G03, G01], f"live move {i}"))
                to_g03_g01.append(await submit(http, g22, doc))
                await asyncio.sleep(0.01)

        senders = [asyncio.create_task(g22_sends()) for _ in range(3)]
        for i in range(5):
            from_g03.append(await submit(http, g03, envelope.build(envelope.new_document(G03, [G22], f"g03 {i}"))))
        while len(to_g03_g01) < 60:
            await asyncio.sleep(0.05)
        before = len(to_g03_g01)
        t0 = time.monotonic()
        r = await http.post(f"{admin}/admin/agencies/{G03}/move", json={"server": "d-g03"}, headers=admin_headers)
        log.append(f"move answered {r.status_code} in {time.monotonic() - t0:.1f}s: {r.text}")
        assert r.status_code == 200, r.text
        moved = r.json()
        during = len(to_g03_g01) - before
        old_endpoint = g03.endpoint
        g03.endpoint = moved["endpoint"]  # the client switches; token and certificate are unchanged
        for i in range(5, 10):
            from_g03.append(await submit(http, g03, envelope.build(envelope.new_document(G03, [G22], f"g03 {i}"))))
        while len(to_g03_g01) < before + during + 40:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*senders)
        n = len(to_g03_g01)
        want_sent, want_received = n + len(from_g03), 2 * n + len(from_g03)

        deadline = time.monotonic() + 180
        while True:
            stats = (await http.get(f"{admin}/admin/stats", headers=admin_headers)).json()
            if stats["sent"] >= want_sent and stats["received"] >= want_received:
                break
            assert time.monotonic() < deadline, f"counters stuck at {stats['sent']}/{stats['received']}"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # nothing more may arrive: no duplicate behind the last one
        stats = (await http.get(f"{admin}/admin/stats", headers=admin_headers)).json()
        old_status = (await http.get(f"{old_endpoint}/v1/inbox", headers=g03.headers)).status_code
        agencies_view = (await http.get(f"{admin}/admin/agencies", headers=admin_headers)).json()
        return {
            "moved": moved, "during": during, "sent": to_g03_g01, "from_g03": from_g03, "stats": stats,
            "want": (want_sent, want_received), "old_status": old_status, "admin_agencies": agencies_view,
            "g03": await inbox(http, g03), "g01": await inbox(http, agencies[G01]),
            "g22": await inbox(http, g22),
        }


def test_agency_moves_live_through_the_admin_app(tmp_path: Path, vhost_url: str) -> None:
    from axis.ops.up import start

    wd = tmp_path / "w"
    servers = [("d1", "dedicated"), ("sh", "shared")]
    path, conn = generate_workdir(wd, [(G22, "VPCP", "d1"), (G01, "BCA", "sh"), (G03, "BGDĐT", "sh")], servers,
                                  base_port=free_port_block(3), amqp_url=vhost_url, routers=2)
    run = start(path, wd, conn, timeout=120)
    try:
        log: list[str] = []
        out = asyncio.run(scenario(conn, conn["admin"]["url"], conn["admin"]["token"], log))
        print(*log, sep="\n")
        assert run.failed() == []
        hosts = dict(run.hosts)
        acks = {n: read_ack(run.control_dir, p.pid) for n, p in run.procs if n != "admin"}  # type: ignore[arg-type]
    finally:
        run.stop()
    moved = out["moved"]
    assert {k: moved[k] for k in ("agency", "from", "to")} == {"agency": G03, "from": "sh", "to": "d-g03"}
    assert moved["endpoint"].startswith("https://127.0.0.1:") and moved["kind"] == "dedicated"
    # every document exactly once in each recipient's inbox; G03's whole inbox is on its new server
    assert sorted(i["document_id"] for i in out["g03"]) == sorted(out["sent"])
    assert sorted(i["document_id"] for i in out["g01"]) == sorted(out["sent"])
    assert sorted(i["document_id"] for i in out["g22"]) == sorted(out["from_g03"])
    assert moved["rows"]["received"] >= 1 and moved["rows"]["sent"] == 5  # its history went with it
    assert out["during"] > 0, "no document was submitted while the agency moved"
    # the counters are exact: each document sent once, each delivery received once, nothing refused
    want_sent, want_received = out["want"]
    assert (out["stats"]["sent"], out["stats"]["received"], out["stats"]["refused"]) == (want_sent, want_received, 0)
    assert out["old_status"] == 401  # the old server no longer takes G03's token
    # the supervisor: a new host for the new server; every process acknowledged the final configuration
    assert hosts[next(n for n, ids in hosts.items() if "d-g03" in ids)] == ("d-g03",)
    final = load_config(path)
    assert [s.id for s in final.servers] == ["d1", "sh", "d-g03"]  # the failed move left nothing behind
    assert final.directory.server_of(G03).id == "d-g03"  # type: ignore[union-attr]
    assert final.agency(G03).moved_from == ("sh",)  # type: ignore[union-attr]
    digests = {a["digest"] for a in acks.values() if a and not a.get("ready")}
    assert len(digests) == 1
    # the admin app's own view followed the move; connections.json names the new endpoint
    assert next(a for a in out["admin_agencies"] if a["code"] == G03)["server"] == "d-g03"
    import orjson

    written = orjson.loads((wd / "connections.json").read_bytes())
    g03 = next(a for a in written["agencies"] if a["code"] == G03)
    assert g03["endpoint"] == moved["endpoint"] and Path(g03["tls_cert"]).is_file()  # its TLS certificate stays
