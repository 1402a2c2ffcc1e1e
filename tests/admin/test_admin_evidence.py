"""The admin app's evidence routes over a real log store (filled by LogStore.append, tree heads signed with a log
key issued by the test CA): search, traces, the latest tree head, and the monitor that raises the alarm when a
new tree head does not extend the previous one or does not verify."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from axis.admin.app import AdminSettings, create_app
from axis.core import pki as pkimod
from axis.core.evidence import Event, SignedTreeHead, sign_sth
from axis.log.store import LogStore
from tests.support.testing import TestPKI, make_pki

TOKEN = "admin-evidence-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
G22, H41, H42 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H42"
DOC = f"{G22},2019/03/12,1/VPCP-TTĐT"
DOC2 = f"{H41},2019/03/13,7/BTC"
T0 = 1_552_370_000_000  # 2019-03-12 UTC
DIGEST = hashlib.sha256(b"the signed bytes").hexdigest()
DIGEST2 = hashlib.sha256(b"other signed bytes").hexdigest()


def events() -> list[Event]:
    return [
        Event("submitted", T0, G22, DOC, 1, DIGEST, server="srv-a"),
        Event("routed", T0 + 5, G22, DOC, 1, DIGEST),
        Event("submitted", T0 + 7, H41, DOC2, 1, DIGEST2, server="srv-b"),
        Event("stored", T0 + 40, G22, DOC, 1, DIGEST, agency=H41),
        Event("stored", T0 + 41, G22, DOC, 1, DIGEST, agency=H42),
        Event("status", T0 + 42, G22, DOC, 1, DIGEST, agency=H41, code="01"),
        Event("refused", T0 + 86_400_000, H41, DOC2, 1, DIGEST2, reason="UNKNOWN_RECIPIENT", ref="m-1"),
        Event("acked", T0 + 90_000_000, G22, DOC, 1, "", agency=H41),
    ]


@dataclass
class Log:
    url: str
    path: Path
    pki: TestPKI
    key: pkimod.PrivateKey
    cert: bytes

    def run(self, coro_fn: object) -> object:
        async def go() -> object:
            store = await LogStore.open(self.url)
            try:
                return await coro_fn(store)  # type: ignore[operator]
            finally:
                await store.close()

        with ThreadPoolExecutor(1) as pool:  # a thread of its own: Playwright's sync API keeps a loop in this one
            return pool.submit(asyncio.run, go()).result()

    def append_and_sign(self, evs: list[Event], ts: int | None = None) -> SignedTreeHead:
        async def go(store: LogStore) -> SignedTreeHead:
            await store.append(evs)
            size = await store.size()
            sth = sign_sth(size, ts or int(time.time() * 1000), await store.root(size), self.key, self.cert)
            await store.save_sth(sth)
            return sth

        return self.run(go)  # type: ignore[return-value]

    def insert_sth(self, sth: SignedTreeHead) -> None:
        """Put a tree head in the store behind its back (save_sth would refuse a root that is not the log's)."""
        with sqlite3.connect(self.path) as db:
            fp = hashlib.sha256(sth.certificate.encode()).digest()
            db.execute("INSERT OR IGNORE INTO axis_log_certs (fp, pem) VALUES (?, ?)", (fp, sth.certificate))
            db.execute("INSERT INTO axis_log_sth (tree_size, ts, root_hash, signature, cert_fp) VALUES (?, ?, ?, ?, ?)",
                       (sth.tree_size, sth.timestamp, sth.root, base64.b64decode(sth.signature), fp))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestPKI, pkimod.PrivateKey, bytes]:
    p = make_pki(tmp_path_factory.mktemp("pki"), [G22, H41], algorithm="ec")
    issued = pkimod.issue_log_certificate(p.dir)
    return p, pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes()


@pytest.fixture
def log(tmp_path: Path, pki: tuple[TestPKI, pkimod.PrivateKey, bytes]) -> Log:
    path = tmp_path / "evidence.sqlite3"
    lg = Log(f"sqlite:///{path}", path, *pki)
    lg.append_and_sign(events())
    return lg


def settings(log: Log, tmp_path: Path, **kw: object) -> AdminSettings:
    return AdminSettings(stats_url=f"sqlite:///{tmp_path / 'stats.sqlite3'}", token=TOKEN,
                         amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost", evidence_url=log.url,
                         ca_path=log.pki.ca_pem, crl_path=log.pki.crl_pem, log_check_seconds=0.05,
                         **kw)  # type: ignore[arg-type]


@pytest.fixture
def client(log: Log, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(log, tmp_path)), follow_redirects=False) as c:
        yield c


def wait_status(client: TestClient, pred: object, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        s = client.get("/admin/log/status", headers=BEARER).json()
        if pred(s):  # type: ignore[operator]
            return s  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, s
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/admin/documents", f"/admin/documents/{G22}/x/trace", "/admin/log/sth",
                                  "/admin/log/status"])
def test_the_evidence_routes_need_the_admin_token(client: TestClient, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = client.get(path, headers=headers)
        assert r.status_code == 401 and r.json()["reason"] == "UNAUTHORIZED"


def test_search(client: TestClient) -> None:
    r = client.get("/admin/documents", headers=BEARER)
    assert r.status_code == 200
    body = r.json()
    assert [i["leaf_index"] for i in body["items"]] == list(range(8)) and body["next_offset"] is None
    first = body["items"][0]
    assert first == {"leaf_index": 0, "v": 1, "type": "submitted", "at": T0, "sender": G22, "document_id": DOC,
                     "doc_type": 1, "sha256": DIGEST, "server": "srv-a", "time": "2019-03-12T05:53:20Z"}

    def idx(**params: object) -> list[int]:
        r = client.get("/admin/documents", params=params, headers=BEARER)
        assert r.status_code == 200, r.text
        return [i["leaf_index"] for i in r.json()["items"]]

    assert idx(sender=G22) == [0, 1, 3, 4, 5, 7]
    assert idx(document_id=DOC2) == [2, 6]
    assert idx(recipient=H41) == [3, 5, 7]
    assert idx(type="stored") == [3, 4]
    assert idx(sender=G22, type="stored", recipient=H42) == [4]
    assert idx(**{"from": "2019-03-13"}) == [6, 7]
    assert idx(to="2019-03-12") == [0, 1, 2, 3, 4, 5]
    assert idx(**{"from": "2019-03-12T05:53:20.040Z", "to": "2019-03-12T05:53:20.042Z"}) == [3, 4]
    page = client.get("/admin/documents", params={"limit": 3}, headers=BEARER).json()
    assert [i["leaf_index"] for i in page["items"]] == [0, 1, 2] and page["next_offset"] == 3
    page = client.get("/admin/documents", params={"limit": 3, "offset": 6}, headers=BEARER).json()
    assert [i["leaf_index"] for i in page["items"]] == [6, 7] and page["next_offset"] is None
    page = client.get("/admin/documents", params={"limit": 2, "offset": 6}, headers=BEARER).json()
    assert page["next_offset"] is None  # exactly the last page: no empty page after it
    for bad in ({"type": "bogus"}, {"limit": 0}, {"limit": 5000}, {"limit": "x"}, {"offset": -1},
                {"from": "yesterday"}):
        r = client.get("/admin/documents", params=bad, headers=BEARER)
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", bad


def test_trace(client: TestClient) -> None:
    for doc_path in (quote(DOC, safe=""), DOC):  # the DocumentId's slashes percent-encoded, or as they are
        r = client.get(f"/admin/documents/{G22}/{doc_path}/trace", headers=BEARER)
        assert r.status_code == 200, r.text
        t = r.json()
        assert (t["document_id"], t["sender"]) == (DOC, G22)
        assert [(e["leaf_index"], e["type"]) for e in t["events"]] == [
            (0, "submitted"), (1, "routed"), (3, "stored"), (4, "stored"), (5, "status"), (7, "acked")]
        assert t["events"][4]["code"] == "01" and t["events"][4]["agency"] == H41
    r = client.get(f"/admin/documents/{H42}/{quote(DOC, safe='')}/trace", headers=BEARER)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_latest_sth(client: TestClient, log: Log) -> None:
    r = client.get("/admin/log/sth", headers=BEARER)
    assert r.status_code == 200
    sth = SignedTreeHead.from_json(r.json())
    assert sth.tree_size == 8
    newer = log.append_and_sign([Event("acked", T0 + 1, G22, DOC, 1, "", agency=H42)])
    assert client.get("/admin/log/sth", headers=BEARER).json() == newer.to_json()


def test_no_tree_head_yet(tmp_path: Path, pki: tuple[TestPKI, pkimod.PrivateKey, bytes]) -> None:
    lg = Log(f"sqlite:///{tmp_path / 'empty.sqlite3'}", tmp_path / "empty.sqlite3", *pki)
    with TestClient(create_app(settings(lg, tmp_path))) as c:
        r = c.get("/admin/log/sth", headers=BEARER)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert c.get("/admin/documents", headers=BEARER).json() == {"items": [], "next_offset": None}
        s = wait_status(c, lambda s: s["checks"] >= 1)
        assert s["consistent"] is True and s["tree_size"] is None


def test_without_a_log_the_routes_answer_503(tmp_path: Path) -> None:
    s = AdminSettings(stats_url=f"sqlite:///{tmp_path / 'stats.sqlite3'}", token=TOKEN,
                      amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost")
    with TestClient(create_app(s)) as c:
        for path in ("/admin/documents", f"/admin/documents/{G22}/x/trace", "/admin/log/sth", "/admin/log/status"):
            r = c.get(path, headers=BEARER)
            assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", path
        assert "axis_log_consistent 1.0" in c.get("/metrics", headers=BEARER).text


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics", headers=BEARER).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def test_the_monitor_follows_a_growing_log(client: TestClient, log: Log) -> None:
    s = wait_status(client, lambda s: s["tree_size"] == 8)
    assert s["consistent"] is True and s["problem"] is None and s["error"] is None
    assert metric(client, "axis_log_consistent") == 1 and metric(client, "axis_log_tree_size") == 8
    log.append_and_sign([Event("acked", T0 + 1, G22, DOC, 1, "", agency=H42)])
    log.append_and_sign([Event("submitted", T0 + 2, G22, f"{G22},x,{i}", 1, DIGEST) for i in range(13)])
    s = wait_status(client, lambda s: s["tree_size"] == 22)
    assert s["consistent"] is True
    assert metric(client, "axis_log_consistent") == 1 and metric(client, "axis_log_tree_size") == 22


def test_a_forked_tree_head_raises_the_alarm(client: TestClient, log: Log) -> None:
    """A validly signed tree head whose root is not the extension of the one seen before: a rewritten history."""
    wait_status(client, lambda s: s["tree_size"] == 8)
    forked_root = hashlib.sha256(b"another history").digest()
    forked = sign_sth(12, int(time.time() * 1000), forked_root, log.key, log.cert)
    log.append_and_sign([Event("submitted", T0 + 2, G22, f"{G22},y,{i}", 1, DIGEST) for i in range(3)])  # 11
    wait_status(client, lambda s: s["tree_size"] == 11)
    log.run(lambda store: store.append([Event("routed", T0 + 3, G22, f"{G22},y,0", 1, DIGEST)]))  # 12 leaves
    log.insert_sth(forked)
    s = wait_status(client, lambda s: s["consistent"] is False)
    assert "does not extend" in s["problem"] and s["tree_size"] == 11  # the last good one
    assert metric(client, "axis_log_consistent") == 0 and metric(client, "axis_log_tree_size") == 11
    # a later, honest tree head does not clear the alarm: the fork happened
    log.append_and_sign([Event("routed", T0 + 4, G22, f"{G22},y,1", 1, DIGEST)])
    time.sleep(0.3)
    assert metric(client, "axis_log_consistent") == 0


def test_a_tree_head_that_does_not_verify_raises_the_alarm(client: TestClient, log: Log, tmp_path: Path) -> None:
    wait_status(client, lambda s: s["tree_size"] == 8)
    other = make_pki(tmp_path / "other", [G22], algorithm="ec")
    issued = pkimod.issue_log_certificate(other.dir)
    key, cert = pkimod.load_key(issued.key_path.read_bytes()), issued.cert_path.read_bytes()

    async def go(store: LogStore) -> None:
        await store.append([Event("routed", T0 + 9, H41, DOC2, 1, DIGEST2)])
        await store.save_sth(sign_sth(9, int(time.time() * 1000), await store.root(9), key, cert))

    log.run(go)
    s = wait_status(client, lambda s: s["consistent"] is False)
    assert "tree head 9@" in s["problem"] and s["tree_size"] == 8


def test_an_archive_past_the_last_checked_tree_head_is_a_gap_not_an_alarm(client: TestClient, log: Log) -> None:
    """`axis log archive --drop` may drop leaves below a tree head the monitor has not seen yet: the store can then
    no longer prove the link from the monitor's last tree head. That is a gap (noted, the signature of the new head
    still checked), never a false alarm of a rewritten history."""
    wait_status(client, lambda s: s["tree_size"] == 8)
    log.append_and_sign([Event("submitted", T0 + 2, G22, f"{G22},z,{i}", 1, DIGEST) for i in range(29)])  # 37
    log.run(lambda store: store.drop_archived(33))  # below a head (37) the monitor may not have seen
    log.append_and_sign([Event("routed", T0 + 3, G22, f"{G22},z,0", 1, DIGEST)])  # 38
    s = wait_status(client, lambda s: s["tree_size"] == 38)
    assert s["consistent"] is True and s["problem"] is None
    assert metric(client, "axis_log_consistent") == 1
    if s.get("gap"):  # when it had seen only tree head 8
        assert "archived" in str(s["gap"])
    # and afterwards it follows the log again, with proofs
    log.append_and_sign([Event("routed", T0 + 4, G22, f"{G22},z,1", 1, DIGEST)])
    s = wait_status(client, lambda s: s["tree_size"] == 39)
    assert s["consistent"] is True
