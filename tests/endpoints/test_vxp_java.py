"""A Java client (tests/endpoints/java/VxpSdkClient.java: the SDK's requests rebuilt with the JDK alone —
HttpURLConnection, javax.crypto HMAC, java.util.HashMap order) against endpoint servers listening on TCP with the
real broker: a document sent from Java arrives through /v1; one sent through /v1 is listed, downloaded, saved
where the SDK saves it (exactly the signed bytes) and taken from Java. Skipped without ``java`` (Java 11+)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from axis.core import envelope
from endpoints.app import create_app
from tests.integration.conftest import G01, G22, H53, Axis, wait_for
from tests.integration.conftest import axis_env as axis_env
from tests.integration.test_flow import inbox, unsigned
from tests.support.testing import free_port_block

pytestmark = pytest.mark.rabbitmq
CLIENT = Path(__file__).parent / "java" / "VxpSdkClient.java"
JAVA = shutil.which("java")


@pytest.fixture
async def listening(axis_env: Axis) -> AsyncIterator[dict[str, str]]:
    """Every endpoint server of the in-process axis on a TCP port: server id → base URL."""
    port = free_port_block(len(axis_env.servers))
    servers, tasks, urls = [], [], {}
    for i, (sid, srv) in enumerate(axis_env.servers.items()):
        config = uvicorn.Config(create_app(srv), host="127.0.0.1", port=port + i, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
        urls[sid] = f"http://127.0.0.1:{port + i}"
    await wait_for(lambda: asyncio.sleep(0, all(s.started for s in servers)), what="servers listening")
    try:
        yield urls
    finally:
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks)


async def java(env: Axis, urls: dict[str, str], code: str, cwd: Path, *commands: str) -> list[tuple[str, str]]:
    a = env.agency(code)
    proc = await asyncio.create_subprocess_exec(
        JAVA or "java", str(CLIENT), f"{urls[a['server']]}/vxp", code, a["token"], *commands, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return [tuple(line.split("\t", 1)) for line in out.decode().splitlines()]  # type: ignore[misc]


@pytest.mark.skipif(JAVA is None, reason="no java on PATH")
async def test_java_client(axis_env: Axis, listening: dict[str, str], tmp_path: Path) -> None:
    env = axis_env
    (tmp_path / "doc.edxml").write_bytes(unsigned(G01, [H53], subject="Gửi từ Java"))  # the server signs it
    r = await env.client(G22).post("/v1/documents", content=unsigned(G22, [G01], subject="Gửi tới Java"),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 202
    await wait_for(lambda: inbox(env, G01), what="G01 inbox")

    answers = await java(env, listening, G01, tmp_path, "send:doc.edxml:edoc", "list:edoc", "getfirst:edocs",
                         "update:done", "list:edoc")
    assert [cmd for cmd, _ in answers] == ["send:doc.edxml:edoc", "list:edoc", "getfirst:edocs", "update:done",
                                           "list:edoc"]
    for _, body in answers:
        assert '"status":"OK","ErrorCode":"0"' in body, body
    assert '"DocId":"' in answers[0][1] and answers[-1][1].endswith('"data":[]}')

    [h53_item] = await wait_for(lambda: inbox(env, H53), what="H53 receives the Java document")
    assert h53_item["from"] == G01
    [saved] = list((tmp_path / "edocs").glob("*/*/*.edxml"))  # <filePath>/<yyyy>/<M>/<docId>.edxml
    [g01_item] = await inbox(env, G01)
    assert saved.stem == g01_item["id"] and g01_item["acked"]
    assert saved.read_bytes() == (await env.client(G01).get(f"/v1/documents/{g01_item['id']}")).content
    assert envelope.parse(saved.read_bytes()).subject == "Gửi tới Java"  # type: ignore[union-attr]

    # a wrong secret from Java: the SDK's FAIL shape
    env.agency(G01)["token"] = "wrong-" + env.agency(G01)["token"]
    [(_, body)] = await java(env, listening, G01, tmp_path, "agencies")
    assert body.startswith('{"status":"FAIL","ErrorCode":"UNAUTHORIZED"'), body
