"""`axis evidence export` against the real endpoint server (its `GET /v1/evidence` route, served over HTTP on
127.0.0.1) of an in-process axis on the real RabbitMQ with its log writer: a document sent, its bundle exported
through connections.json, verified offline by `axis evidence verify`, one flipped byte refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from axis.cli import app
from axis.config import write_connections
from axis.core.evidence_bundle import M_ENVELOPE
from endpoints.app import create_app
from tests.integration.conftest import G22, H53, Axis, axis_env  # noqa: F401  (fixtures)
from tests.integration.test_evidence_flow import _sent_and_stored, logged  # noqa: F401  (a fixture)
from tests.support.evidence import members, rezip

pytestmark = pytest.mark.rabbitmq
runner = CliRunner()


@asynccontextmanager
async def serving(asgi: Any) -> AsyncIterator[str]:
    """Serve ``asgi`` on 127.0.0.1 in this event loop (the endpoint server's broker objects live here)."""
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def cli(*args: str) -> Any:
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_export_then_verify_offline(logged: Axis, tmp_path: Path) -> None:  # noqa: F811
    env = logged
    _, _, document_id = await _sent_and_stored(env)
    sender = env.agency(G22)
    async with serving(create_app(env.servers[sender["server"]])) as url:
        connections = {**env.connections,
                       "agencies": [{**a, "endpoint": url} if a["code"] == G22 else a
                                    for a in env.connections["agencies"]]}
        conn = write_connections(tmp_path, connections)
        out = tmp_path / "out" / "evidence.zip"
        r = await cli("evidence", "export", document_id, "--sender", G22, "-o", str(out), "--connections", str(conn),
                      "--json")
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["ok"] is True and result["file"] == str(out) and result["bytes"] == out.stat().st_size
        assert (result["document_id"], result["sender"]) == (document_id, G22)
        assert {"submitted", "routed", "stored"} <= {e["type"] for e in result["leaves"]}

        r = await cli("evidence", "export", document_id, "--sender", G22, "-o", str(tmp_path / "again.zip"),
                      "--connections", str(conn))
        assert r.exit_code == 0 and "wrote" in r.stdout and "ok" in r.stdout

        # a document G22 never sent: the endpoint's refusal, exit 1
        r = await cli("evidence", "export", "NOT-A-DOCUMENT", "--sender", G22, "-o", str(tmp_path / "no.zip"),
                      "--connections", str(conn), "--json")
        assert r.exit_code == 1 and json.loads(r.stdout)["ok"] is False
        assert not (tmp_path / "no.zip").exists()
        # H53's endpoint is not served here: cannot reach it
        r = await cli("evidence", "export", document_id, "--sender", H53, "-o", str(tmp_path / "h53.zip"),
                      "--connections", str(conn), "--json", "--wait", "0")
        assert r.exit_code == 1

    # offline, with no axis: the CA is all it takes
    ca = str(env.config.pki.ca)
    r = await cli("evidence", "verify", str(out), "--ca", ca, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True, r.output
    envelope = members(out.read_bytes())[M_ENVELOPE]
    bad = tmp_path / "bad.zip"
    tampered = envelope.replace("Bằng chứng".encode(), "Bằng chứnG".encode())  # the subject _sent_and_stored sends
    assert tampered != envelope
    bad.write_bytes(rezip(out.read_bytes(), {M_ENVELOPE: tampered}))
    r = await cli("evidence", "verify", str(bad), "--ca", ca, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["reason"] == "SIGNATURE_INVALID", r.output
