"""Big documents through a real axis (router, endpoint servers, real RabbitMQ; the HTTP apps in-process): streamed
to the blob store at the door, routed and delivered by reference, fetched whole and by byte range, the blob
deleted once every recipient acked it; refusals leave nothing behind. (The 200 MB run with every process's
peak RSS is bench/bigdoc.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from axis.blobs import open_blobs
from axis.broker.setup import prepare_broker
from axis.broker.transport import connect
from axis.config import generate_workdir, load_config
from axis.core.blobref import read_stored
from axis.core.pki import load_certs, load_key
from axis.router.service import RouterService
from axis.stats.counting import open_counter
from endpoints.server import EndpointServer
from tests.endpoints.test_vxp_flow import sdk
from tests.integration.conftest import AGENCIES, G01, G22, H53, SERVERS, Axis, TeeCounter, wait_for
from tests.support.bigdoc import write_big_document

INLINE = 1024 * 1024
LIMIT = 40 * 1024 * 1024
SIZE = 12 * 1024 * 1024


@pytest.fixture(params=["sqlite"])
def inbox_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def inbox_url(inbox_backend: str) -> Iterator[str | None]:
    """None (each server's own SQLite file), or a PostgreSQL database of this test only, dropped afterwards."""
    if inbox_backend != "postgresql":
        yield None
        return
    from tests.conftest import fresh_pg_database

    with fresh_pg_database("axis_big") as url:
        yield url


@pytest.fixture(params=["file"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def blobs_url(blob_backend: str) -> Iterator[str]:
    """'' (the blobs directory), or the URL of a PostgreSQL database of this test only (large objects)."""
    if blob_backend != "postgres":
        yield ""
        return
    from tests.conftest import fresh_pg_database

    with fresh_pg_database("axis_big_blobs") as url:
        yield url


@pytest.fixture
async def big_env(tmp_path: Path, vhost_url: str, inbox_url: str | None, blobs_url: str) -> AsyncIterator[Axis]:
    path, connections = generate_workdir(tmp_path / "work", AGENCIES, SERVERS, base_port=18721, amqp_url=vhost_url)
    config = load_config(path)
    config = dataclasses.replace(
        config, limits=dataclasses.replace(config.limits, max_document_bytes=LIMIT, inline_max_bytes=INLINE),
        blobs=dataclasses.replace(config.blobs, retention_days=0, url=blobs_url))
    if inbox_url is not None:  # the references in PostgreSQL rows (bytea), not only SQLite's
        config = dataclasses.replace(config, servers=tuple(dataclasses.replace(s, inbox_url=inbox_url)
                                                           for s in config.servers))
    await prepare_broker(config)
    counter = TeeCounter(await open_counter(config.stats_url))
    router = RouterService(config, counter=counter, batch=16)
    servers = {sid: EndpointServer(config, sid) for sid, _ in SERVERS}
    await router.start()
    connection = await connect(vhost_url)
    for s in servers.values():
        await s.start(connection)
    env = Axis(config, connections, counter, router, servers)
    try:
        yield env
    finally:
        for c in env.clients.values():
            await c.aclose()
        for s in servers.values():
            await s.stop()
        await connection.close()
        await router.stop()
        await counter.close()


def big_document(env: Axis, tmp_path: Path, recipients: list[str], size: int = SIZE, number: int = 1
                 ) -> tuple[Path, str]:
    a = env.agency(G22)
    key, cert = load_key(Path(a["key"]).read_bytes()), load_certs(Path(a["cert"]).read_bytes())[0]
    path = tmp_path / f"big-{number}.xml"
    sha, _ = write_big_document(path, key, cert, G22, recipients, size, number=number)
    return path, sha


def chunks(path: Path, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            while piece := f.read(size):
                yield piece
    return gen()


async def inbox(env: Axis, code: str) -> list[dict]:  # type: ignore[type-arg]
    return list((await env.client(code).get("/v1/inbox")).json()["items"])


def blob_files(env: Axis) -> list[str]:
    """The digests of the blobs in the axis's blob store (a directory or PostgreSQL)."""
    return sorted(name for name, _ in open_blobs(env.config.blob_dir, env.config.blobs.url).blobs())


@pytest.mark.parametrize(("inbox_backend", "blob_backend"),
                         [("sqlite", "file"), ("postgresql", "file"),
                          pytest.param("sqlite", "postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_big_document_by_reference_end_to_end(big_env: Axis, tmp_path: Path) -> None:
    env = big_env
    path, sha = big_document(env, tmp_path, [H53, G01])
    data = path.read_bytes()
    r = await env.client(G22).post("/v1/documents", content=chunks(path), headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    sub = r.json()
    assert sub["recipients"] == [H53, G01] and sub["size"] == len(data)
    assert blob_files(env) == [sha]
    assert os.listdir(env.config.blob_dir / "tmp") == []
    sent = await env.servers["d1"].store.sent_row(G22, sub["id"])  # type: ignore[union-attr]
    assert sent is not None and read_stored(sent.data) is not None  # the reference, not 12 MB, in the store

    items = {}
    for code in (H53, G01):
        got = await wait_for(lambda code=code: inbox(env, code), what=f"{code} inbox", timeout=60)
        assert len(got) == 1 and got[0]["document_id"] == sub["document_id"]
        assert got[0]["size"] == len(data)  # the document's, not its stored reference's
        items[code] = got[0]["id"]
        whole = await env.client(code).get(f"/v1/documents/{items[code]}")
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        assert hashlib.sha256(whole.content).hexdigest() == sha  # the exact signed bytes
    part = await env.client(H53).get(f"/v1/documents/{items[H53]}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = await env.client(H53).get(f"/v1/documents/{items[H53]}", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    past = await env.client(H53).get(f"/v1/documents/{items[H53]}", headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    head = await env.client(H53).head(f"/v1/documents/{items[H53]}")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
    assert head.headers["etag"] == f'"{sha}"'
    mine = await env.client(G22).get(f"/v1/documents/{sub['id']}", headers={"Range": "bytes=0-99"})
    assert mine.status_code == 206 and mine.content == data[:100]  # the sender's copy too

    # counted as any document, with its real size; the 01s name the blob's digest (the log's "stored" leaves)
    key = f"{G22}|{sub['document_id']}|0"  # the router counts after it published (axis.router.settle): wait for it

    async def counted() -> object:
        return env.counter.mem.accepted.get(key)

    acc = await wait_for(counted, what="the document counted")
    assert acc.size == len(data)
    await wait_for(lambda: _delivered(env, 2), what="two deliveries counted")

    # no evidence bundle of 12 MB: refused with a reason, not built
    bundle = await env.client(G22).get("/v1/evidence", params={"document_id": sub["document_id"]})
    assert bundle.status_code == 413 and bundle.json()["reason"] == "TOO_LARGE"

    # the VPCP SDK facade does not hold it in memory for getEdoc: a clear failure, the /v1 route named
    got = await sdk(env, G01).get_edoc(items[G01])
    assert got["status"] == "FAIL" and got["ErrorCode"] == "TOO_LARGE" and "/v1/documents" in got["ErrorDesc"]

    # a status about it travels as for any document
    r = await env.client(G01).post(f"/v1/documents/{items[G01]}/status", json={"code": "03", "description": "ok"})
    assert r.status_code == 202, r.text

    # the blob stays until every recipient acked it
    assert (await env.client(H53).post(f"/v1/documents/{items[H53]}/ack")).status_code == 200
    assert blob_files(env) == [sha]
    assert (await env.client(G01).post(f"/v1/documents/{items[G01]}/ack")).status_code == 200
    await wait_for(lambda: _gone(env), what="the blob deleted after the last ack")
    gone = await env.client(H53).get(f"/v1/documents/{items[H53]}")
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    # its statuses do not need it: what they answer for was kept at delivery (endpoints.inbox.ReceivedHead)
    late = await env.client(H53).post(f"/v1/documents/{items[H53]}/status", json={"code": "06", "description": "x"})
    assert late.status_code == 202, late.text

    async def done() -> bool:
        sts = (await env.client(G22).get(f"/v1/documents/{sub['id']}/status")).json()["items"]
        return any((st["from"], st["code"]) == (H53, "06") for st in sts)

    await wait_for(done, what="the late status at the sender")


async def _delivered(env: Axis, n: int) -> bool:
    return len(env.counter.mem.delivered) >= n


async def _gone(env: Axis) -> bool:
    return blob_files(env) == []


async def test_small_documents_stay_inline(big_env: Axis, tmp_path: Path) -> None:
    env = big_env
    path, _ = big_document(env, tmp_path, [H53], size=INLINE // 2)
    r = await env.client(G22).post("/v1/documents", content=path.read_bytes(),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    sent = await env.servers["d1"].store.sent_row(G22, r.json()["id"])  # type: ignore[union-attr]
    data = path.read_bytes()
    assert sent is not None and sent.data == data
    assert blob_files(env) == []
    items = await wait_for(lambda: inbox(env, H53), what="inline delivery")
    url = f"/v1/documents/{items[0]['id']}"
    whole = await env.client(H53).get(url)
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = await env.client(H53).get(url, headers={"Range": "bytes=10-19"})  # ranges on inline documents too
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    head = await env.client(H53).head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


async def test_refused_big_documents_leave_nothing(big_env: Axis, tmp_path: Path) -> None:
    env = big_env
    path, _ = big_document(env, tmp_path, [H53])
    data = bytearray(path.read_bytes())
    i = data.rindex(b"</ContentTransferEncoded>") - 100
    data[i:i + 4] = b"ABCD" if bytes(data[i:i + 4]) != b"ABCD" else b"DCBA"
    r = await env.client(G22).post("/v1/documents", content=bytes(data), headers={"content-type": "application/xml"})
    assert r.status_code == 422 and r.json()["reason"] == "SIGNATURE_INVALID", r.text
    r = await env.client(G22).post("/v1/documents", content=b"<" + b"x" * (LIMIT + 1),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 413 and r.json()["reason"] == "TOO_LARGE"
    # another agency's big document: signed by G22, submitted by H53
    r = await env.client(H53).post("/v1/documents", content=path.read_bytes(),
                                   headers={"content-type": "application/xml"})
    assert r.status_code == 403 and r.json()["reason"] == "FORBIDDEN"
    assert blob_files(env) == [] and os.listdir(env.config.blob_dir / "tmp") == []
    await asyncio.sleep(0.5)
    assert await inbox(env, H53) == []


@pytest.mark.parametrize("blob_backend", ["file", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_upload_cut_mid_way_leaves_nothing(big_env: Axis, tmp_path: Path) -> None:
    env = big_env
    path, _ = big_document(env, tmp_path, [H53])

    async def cut() -> AsyncIterator[bytes]:
        with open(path, "rb") as f:
            for _ in range(12):  # 3 MB of the 12, then the client goes away
                yield f.read(256 * 1024)
        raise httpx.ReadError("client gone")

    with pytest.raises(httpx.ReadError):
        await env.client(G22).post("/v1/documents", content=cut(), headers={"content-type": "application/xml"})
    await asyncio.sleep(0.2)
    assert blob_files(env) == [] and os.listdir(env.config.blob_dir / "tmp") == []
    assert await inbox(env, H53) == []


@pytest.mark.postgres
@pytest.mark.parametrize("blob_backend", ["postgres"], indirect=True)
async def test_a_blob_store_outage_answers_503_and_keeps_nothing(big_env: Axis, tmp_path: Path) -> None:
    """blobs.url's database refuses connections: the door answers 503 (retry), nothing is spooled, stored or
    published; once it is back, the same upload goes through."""
    from tests.blobs.test_postgres_store import cut_database

    env = big_env
    path, sha = big_document(env, tmp_path, [H53])
    cut_database(env.config.blobs.url, allow=False)
    try:
        r = await env.client(G22).post("/v1/documents", content=chunks(path),
                                       headers={"content-type": "application/xml"})
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["detail"] == "the blob store is unavailable, retry shortly" and r.headers["retry-after"]
        assert os.listdir(env.config.blob_dir / "tmp") == []
    finally:
        cut_database(env.config.blobs.url, allow=True)
    await asyncio.sleep(0.5)
    assert await inbox(env, H53) == [] and blob_files(env) == []
    r = await env.client(G22).post("/v1/documents", content=chunks(path), headers={"content-type": "application/xml"})
    assert r.status_code == 202, r.text
    await wait_for(lambda: _delivered(env, 1), what="the retried upload delivered")
    assert [i["document_id"] for i in await inbox(env, H53)] and blob_files(env) == [sha]


async def test_a_crashed_upload_is_cleaned_when_a_server_starts(big_env: Axis) -> None:
    env = big_env
    tmp = env.config.blob_dir / "tmp"
    # a host process that died mid-upload: its temporary file stays, nothing was published
    code = ("import sys; from axis.blobs import FileBlobStore; s = FileBlobStore(sys.argv[1]).spool(); "
            "s.write(b'<edXML>' + b'A' * 100000); import os; os._exit(9)")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(env.config.blob_dir))
    assert await proc.wait() == 9
    assert len(os.listdir(tmp)) == 1
    again = EndpointServer(env.config, "d2")  # the host starting again
    connection = await connect(env.config.amqp_url)
    try:
        await again.start(connection)
        assert os.listdir(tmp) == [] and blob_files(env) == []
    finally:
        await again.stop()
        await connection.close()
