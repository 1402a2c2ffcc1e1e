"""The admin app: token auth (bearer and dashboard cookie), /admin/stats, /admin/agencies, /admin/servers,
/metrics and the live event stream, over a store filled with known rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from axis.admin.app import COOKIE, SESSION_SECONDS, AdminSettings, _Auth, create_app
from axis.admin.probe import amqp_vhost_and_auth
from axis.stats.store import Accepted, StatsStore
from tests.stats.stats_data import DIRECTORY, G01, H03, fill
from tests.stats.stats_live import serve

TOKEN = "admin-test-token"


async def _fill(url: str) -> None:
    store = await StatsStore.open(url)
    try:
        await fill(store)
    finally:
        await store.close()


@pytest.fixture
def settings(store_url: str) -> AdminSettings:
    asyncio.run(_fill(store_url))
    return AdminSettings(
        stats_url=store_url,
        token=TOKEN,
        directory=DIRECTORY,
        poll_seconds=0.5,
        amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost",
    )


@pytest.fixture
def client(settings: AdminSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False) as c:
        yield c


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "path", ["/admin/stats", "/admin/counters", "/admin/agencies", "/admin/servers", "/metrics", "/admin/events"]
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_unauthorized_is_problem_json(client: TestClient, path: str, headers: dict[str, str]) -> None:
    r = client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == "UNAUTHORIZED"


def test_stats_json(client: TestClient) -> None:
    r = client.get("/admin/stats", headers=BEARER)
    assert r.status_code == 200
    s = r.json()
    assert {k: s[k] for k in ("agencies", "dedicated", "shared", "sent", "received", "refused")} == {
        "agencies": 5,
        "dedicated": 2,
        "shared": 3,
        "sent": 4,
        "received": 6,
        "refused": 3,
    }
    day2 = client.get("/admin/stats", params={"from": "2019-03-13"}, headers=BEARER).json()
    assert (day2["sent"], day2["received"], day2["refused"]) == (1, 0, 2)
    day1 = client.get("/admin/stats", params={"to": "2019-03-12"}, headers=BEARER).json()
    assert (day1["sent"], day1["received"], day1["refused"]) == (3, 6, 1)
    g01 = client.get("/admin/stats", params={"agency": G01, "by": "day"}, headers=BEARER).json()
    assert (g01["sent"], g01["received"]) == (2, 2)
    assert [r["key"] for r in g01["breakdown"]] == ["2019-03-12", "2019-03-13"]
    servers = client.get("/admin/stats", params={"by": "server"}, headers=BEARER).json()
    assert {r["key"] for r in servers["breakdown"]} == {"s-g01", "s-g02", "shared-1", "shared-2"}


def test_counters_are_the_totals_and_live(client: TestClient, store_url: str) -> None:
    r = client.get("/admin/counters", headers=BEARER)
    assert r.status_code == 200
    assert r.json() == {"sent": 4, "received": 6, "refused": 3}
    stats = client.get("/admin/stats", headers=BEARER).json()  # now cached in the app

    async def one_more() -> None:
        store = await StatsStore.open(store_url)
        try:
            at = datetime(2019, 3, 14, 9, tzinfo=UTC)
            await store.record(accepted=[Accepted("x|1|0", G01, "dedicated", "1", 0, 10, ((H03, "shared"),), 1.0, at)])
        finally:
            await store.close()

    asyncio.run(one_more())
    assert client.get("/admin/counters", headers=BEARER).json() == {"sent": 5, "received": 6, "refused": 3}
    assert stats["sent"] == 4


@pytest.mark.parametrize("params", [{"by": "week"}, {"from": "yesterday"}, {"top": "x"}])
def test_bad_filters_are_400(client: TestClient, params: dict[str, str]) -> None:
    r = client.get("/admin/stats", params=params, headers=BEARER)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"


def test_agencies(client: TestClient) -> None:
    rows = {a["code"]: a for a in client.get("/admin/agencies", headers=BEARER).json()}
    assert set(rows) == set(DIRECTORY.agencies)
    assert rows[G01] == {
        "code": G01,
        "name": "Văn phòng Chính phủ",
        "server": "s-g01",
        "kind": "dedicated",
        "sent": 2,
        "received": 2,
        "refused": 0,
        "active": True,
        "aliases": [],
    }
    assert (rows[H03]["kind"], rows[H03]["received"]) == ("shared", 1)


def test_metrics_are_the_store_totals(client: TestClient) -> None:
    r = client.get("/metrics", headers=BEARER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert f'axis_documents_sent_total{{agency="{G01}",kind="dedicated"}} 2.0' in text
    assert 'axis_documents_refused_total{reason="SIGNATURE_INVALID"} 2.0' in text
    assert 'axis_router_latency_seconds_bucket{le="+Inf"} 4.0' in text
    assert "axis_stats_received 6.0" in text


def _replace_cookie(client: TestClient, session: str) -> None:
    """The session cookie the client sends from now on is ``session`` alone (the one the server set, with its own
    domain, is dropped: a client may hold two cookies of one name, and then both are sent)."""
    client.cookies.clear()
    client.cookies.set(COOKIE, session)


def test_dashboard_sign_in_form_then_cookie(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 401 and "admin token" in page.text
    assert 'method="post" action="/login"' in page.text  # the token travels in a body, never in a URL
    assert client.post("/login", data={"token": "wrong"}).status_code == 401
    assert client.post("/login", content=b"token=" + b"x" * 5000,
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
    r = client.post("/login", data={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/"
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "samesite=strict" in set_cookie.lower()
    assert "Max-Age=43200" in set_cookie  # a session of 12 hours, then the token again
    assert TOKEN not in set_cookie  # the cookie is derived from the token hash, not the token
    page = client.get("/")  # the client kept the cookie
    assert page.status_code == 200
    assert "Trục liên thông văn bản quốc gia" in page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert client.get("/admin/stats").status_code == 200
    assert client.get("/static/dashboard.js").status_code == 200
    _replace_cookie(client, "0" * 64)
    assert client.get("/admin/stats").status_code == 401
    # a session is its expiry and an HMAC of it: an expired one, or one whose expiry was moved, is refused
    session = r.cookies[COOKIE]
    expires, _, mac = session.partition(".")
    _replace_cookie(client, f"{int(expires) + 3600}.{mac}")
    assert client.get("/admin/stats").status_code == 401
    auth = _Auth(hashlib.sha256(TOKEN.encode()).hexdigest())
    _replace_cookie(client, auth.new_session(now=time.time() - SESSION_SECONDS - 1))
    assert client.get("/admin/stats").status_code == 401
    _replace_cookie(client, auth.new_session())
    assert client.get("/admin/stats").status_code == 200


def test_the_old_token_url_still_signs_in(client: TestClient) -> None:
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    r = client.get("/", params={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/"  # the token leaves the address bar at once
    assert client.get("/admin/stats").status_code == 200


def test_needs_a_token() -> None:
    with pytest.raises(ValueError):
        create_app(AdminSettings(stats_url="sqlite:///:memory:"))


def test_from_config_duck_typed() -> None:
    class Admin:
        token_sha256 = "a" * 64

    class Srv:
        id, kind, url = "s1", "dedicated", "http://127.0.0.1:1"

    class Cfg:
        stats_url = "sqlite:///x.db"
        admin = Admin()
        directory = DIRECTORY
        amqp_url = "amqp://u:p@127.0.0.1/v%2Fh"
        servers = (Srv(),)

    s = AdminSettings.from_config(Cfg())
    assert (s.stats_url, s.token_digest(), s.endpoints) == ("sqlite:///x.db", "a" * 64, {"s1": "http://127.0.0.1:1"})
    assert amqp_vhost_and_auth(s.amqp_url) == ("v/h", ("u", "p"))
    assert amqp_vhost_and_auth("amqp://guest:guest@127.0.0.1/") == ("/", ("guest", "guest"))


def test_servers_last_seen_and_events_live(settings: AdminSettings, store_url: str) -> None:
    """One endpoint server answers /healthz, one does not; the event stream pushes new rows as they land."""
    health = FastAPI()

    @health.get("/healthz")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    with serve(health) as endpoint:
        live = AdminSettings(
            **{**settings_dict(settings), "endpoints": {"s-g01": endpoint, "s-g02": "http://127.0.0.1:9"}}
        )
        with serve(create_app(live)) as admin, httpx.Client(base_url=admin, headers=BEARER, timeout=10) as http:
            deadline = time.monotonic() + 10
            while True:
                servers = {s["id"]: s for s in http.get("/admin/servers").json()}
                if servers["s-g01"]["up"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert servers["s-g01"]["up"] and servers["s-g01"]["last_seen"]
            assert not servers["s-g02"]["up"] and servers["s-g02"]["last_seen"] is None
            assert servers["shared-1"]["agencies"] == ["000.00.00.H01", "000.00.00.H02"]
            assert (servers["s-g01"]["sent"], servers["s-g01"]["received"]) == (2, 2)

            with http.stream("GET", "/admin/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = _events(stream.iter_lines())
                first = next(e for e in events if e[0] == "stats")[1]
                assert first["sent"] == 4
                asyncio.run(_add_document(store_url))
                later = next(e for e in events if e[0] == "stats")[1]
                assert later["sent"] == 5


def settings_dict(s: AdminSettings) -> dict[str, object]:
    return {f: getattr(s, f) for f in s.__slots__}  # type: ignore[attr-defined]


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, orjson.loads(line[6:])


async def _add_document(url: str) -> None:
    store = await StatsStore.open(url)
    try:
        await store.record(accepted=[Accepted("X|new|1", G01, "dedicated", "new", 1, 10, (), 1.0, datetime.now(UTC))])
    finally:
        await store.close()


@pytest.mark.rabbitmq
def test_queue_depths_from_rabbitmq(settings: AdminSettings, amqp_url: str) -> None:
    """Messages waiting in axis.server.<id> show as that server's queue depth (management API, test vhost)."""
    import aio_pika

    async def publish(n: int) -> None:
        conn = await aio_pika.connect_robust(amqp_url)
        async with conn:
            channel = await conn.channel()
            queue = await channel.declare_queue("axis.server.shared-2", durable=True)
            await queue.purge()
            for i in range(n):
                await channel.default_exchange.publish(aio_pika.Message(f"m{i}".encode()), routing_key=queue.name)

    asyncio.run(publish(3))
    live = AdminSettings(**{**settings_dict(settings), "amqp_url": amqp_url})
    with TestClient(create_app(live)) as client:
        deadline = time.monotonic() + 30  # the management API refreshes queue totals every few seconds
        depth = None
        while depth != 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            depth = {s["id"]: s for s in client.get("/admin/servers", headers=BEARER).json()}["shared-2"]["queue_depth"]
        assert depth == 3
        assert 'axis_queue_depth{queue="axis.server.shared-2"} 3.0' in client.get("/metrics", headers=BEARER).text
