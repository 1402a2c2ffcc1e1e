"""The pure and local parts of a live move: announce_move, check_move (request validation), the endpoint gate,
the supervisor's control socket, the SIGHUP reload acknowledgements, a logical server's hot swap, and the admin
endpoint without a supervisor. The whole move against real processes: tests/integration/test_live_move.py."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from axis.config import Config, announce_move, generate_workdir, load_config, move_agency
from axis.config.reload import ENV_CONTROL_DIR, Reloader, read_ack
from axis.ops.control import ControlError, ControlServer, control_dir_for, request
from axis.ops.livemove import MoveError, check_move
from endpoints.gate import Gate

G22, G01, G03 = "000.00.00.G22", "000.00.00.G01", "000.00.00.G03"
TOKEN = "admin-token-for-tests"


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    return generate_workdir(tmp_path / "w", [(G22, "A", "d1"), (G01, "B", "sh"), (G03, "C", "sh")],
                            [("d1", "dedicated"), ("sh", "shared")], base_port=9101)


def test_announce_then_move(workdir: tuple[Path, dict[str, Any]]) -> None:
    path, _ = workdir
    announced = announce_move(path, G03, "d-g03")
    # the agency stays where it is, its future server exists and may already speak for it
    assert announced.directory.server_of(G03).id == "sh"  # type: ignore[union-attr]
    assert announced.agency(G03).moved_from == ("d-g03",)  # type: ignore[union-attr]
    assert announced.server("d-g03").port == 9103 and announced.directory.agencies_on("d-g03") == ()
    assert announce_move(path, G03, "d-g03") == load_config(path)  # twice: the same file
    final = move_agency(path, G03, "d-g03")
    assert final.directory.server_of(G03).id == "d-g03"  # type: ignore[union-attr]
    assert final.agency(G03).moved_from == ("sh",)  # type: ignore[union-attr]  # the target left the list
    assert final.server("d-g03").keys == (G03,)


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        ({"agency": "000.00.00.X99", "server": "d9"}, 404, "UNKNOWN_RECIPIENT"),
        ({"agency": G03, "server": "Bad Id"}, 422, "SCHEMA_INVALID"),
        ({"agency": G03, "server": 7}, 422, "SCHEMA_INVALID"),
        ({"agency": G03, "server": "d9", "kind": "huge"}, 422, "SCHEMA_INVALID"),
        ({"agency": G03, "server": "d9", "port": "80"}, 422, "SCHEMA_INVALID"),
        ({"agency": G03, "server": "d1"}, 409, "FORBIDDEN"),  # G22's dedicated server
        ({"agency": G03, "server": "sh"}, 409, "FORBIDDEN"),  # already there
        ({"agency": G01, "server": "sh", "port": 1}, 409, "FORBIDDEN"),
    ],
)
def test_check_move_refusals(workdir: tuple[Path, dict[str, Any]], request_: dict[str, Any], status: int,
                             reason: str) -> None:
    with pytest.raises(MoveError) as err:
        check_move(load_config(workdir[0]), request_)
    assert (err.value.status, err.value.body()["reason"]) == (status, reason)


def test_check_move_plans(workdir: tuple[Path, dict[str, Any]]) -> None:
    path, _ = workdir
    plan = check_move(load_config(path), {"agency": G03, "server": "d-g03"})
    assert (plan.source, plan.target, plan.kind, plan.new_server, plan.resume) == ("sh", "d-g03", "dedicated",
                                                                                  True, False)
    move_agency(path, G03, "d-g03")  # a move interrupted after its config rewrite: the same request resumes it
    plan = check_move(load_config(path), {"agency": G03, "server": "d-g03"})
    assert (plan.source, plan.target, plan.new_server, plan.resume) == ("sh", "d-g03", False, True)
    assert check_move(load_config(path), {"agency": G01, "server": "d1x", "kind": "shared"}).kind == "shared"


async def test_gate_swaps_between_operations() -> None:
    gate, seen = Gate(), []
    view = {"v": 1}

    async def operation(i: int) -> None:
        async with gate.hold():
            first = view["v"]
            await asyncio.sleep(0.05)
            seen.append((i, first, view["v"]))  # one view from start to end

    async def swap() -> None:
        async with gate.closed():
            assert gate.active == 0
            view["v"] = 2

    first = [asyncio.create_task(operation(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    swapping = asyncio.create_task(swap())
    await asyncio.sleep(0)
    later = [asyncio.create_task(operation(i)) for i in range(5, 8)]  # wait for the swap, then see v2
    await asyncio.gather(*first, swapping, *later)
    assert sorted(seen) == [(i, 1, 1) for i in range(5)] + [(i, 2, 2) for i in range(5, 8)]


async def test_gate_swap_is_bounded() -> None:
    gate = Gate()
    release = asyncio.Event()

    async def slow() -> None:
        async with gate.hold():
            await release.wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    async with gate.closed(timeout=0.1):  # goes ahead without waiting for ever
        assert gate.active == 1
    release.set()
    await task


async def test_control_socket_round_trip(tmp_path: Path) -> None:
    directory = control_dir_for(tmp_path)
    assert directory.stat().st_mode & 0o777 == 0o700
    server = ControlServer(directory, lambda req: (200, {"echo": req}) if req.get("op") != "boom" else 1 / 0)
    try:
        assert (directory / "control.sock").stat().st_mode & 0o777 == 0o600
        assert await request(server.path, {"op": "ping", "x": "ư"}) == (200, {"echo": {"op": "ping", "x": "ư"}})
        status, body = await request(server.path, {"op": "boom"})
        assert status == 500 and "ZeroDivisionError" in body["detail"]
    finally:
        server.close()
    with pytest.raises(ControlError):
        await request(server.path, {"op": "ping"})


def test_control_dir_for_a_long_work_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    directory = control_dir_for(deep)
    try:
        assert len(str(directory / "control.sock")) < 100 and directory.stat().st_mode & 0o777 == 0o700
    finally:
        directory.rmdir()


async def test_sighup_reloads_and_acknowledges(workdir: tuple[Path, dict[str, Any]], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = workdir
    control = tmp_path / "ctl"
    control.mkdir()
    monkeypatch.setenv(ENV_CONTROL_DIR, str(control))
    applied: list[Config] = []

    async def apply(config: Config) -> None:
        if config.server("sh").kind != "shared":
            raise ValueError("refused by the component")
        applied.append(config)

    reloader = Reloader(path, apply, "test")
    reloader.install()
    try:
        assert read_ack(control, os.getpid())["ready"] is True  # type: ignore[index]
        move_agency(path, G03, "d-g03")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            ack = read_ack(control, os.getpid()) or {}
            if not ack.get("ready"):
                break
            await asyncio.sleep(0.02)
        assert ack["ok"] is True and len(applied) == 1
        assert applied[0].directory.server_of(G03).id == "d-g03"  # type: ignore[union-attr]
        path.write_text(path.read_text().replace("kind: shared", "kind: enormous"))  # does not load
        assert await reloader.reload() is False
        ack = read_ack(control, os.getpid()) or {}
        assert ack["ok"] is False and "enormous" in ack["error"] and len(applied) == 1
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


async def test_endpoint_server_hot_swap(workdir: tuple[Path, dict[str, Any]]) -> None:
    from endpoints.server import EndpointServer

    path, conn = workdir
    tokens = {a["code"]: a["token"] for a in conn["agencies"]}
    old = EndpointServer(load_config(path), "sh")
    assert old.local_agencies == {G01, G03} and set(old.keys) == {G01, G03}
    assert old.tokens.authenticate(f"Bearer {tokens[G03]}") == G03
    final = move_agency(path, G03, "d-g03")
    await old.reload(final)
    assert old.local_agencies == {G01} and set(old.keys) == {G01}
    with pytest.raises(Exception, match="token"):
        old.tokens.authenticate(f"Bearer {tokens[G03]}")
    assert old.config.directory.server_of(G03).id == "d-g03"  # type: ignore[union-attr]  # deliveries forwarded
    new = EndpointServer(final, "d-g03")  # the new server takes the same token
    assert new.tokens.authenticate(f"Bearer {tokens[G03]}") == G03


def test_admin_move_needs_the_supervisor(workdir: tuple[Path, dict[str, Any]]) -> None:
    from fastapi.testclient import TestClient

    from axis.admin.app import AdminSettings, create_app

    config = load_config(workdir[0])
    settings = AdminSettings.from_config(config, token=TOKEN, token_sha256="", control_socket=None,
                                         amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings)) as c:
        r = c.post(f"/admin/agencies/{G03}/move", json={"server": "d-g03"}, headers=auth)
        assert r.status_code == 501 and r.headers["content-type"] == "application/problem+json"
        assert "axis up" in r.json()["detail"]
        r = c.post(f"/admin/agencies/{G03}/move", content=b"{not json", headers=auth)
        assert r.status_code == 422 and r.json()["reason"] == "SCHEMA_INVALID"
        assert c.post(f"/admin/agencies/{G03}/move", json={"server": "d-g03"}).status_code == 401
    dead = AdminSettings.from_config(config, token=TOKEN, token_sha256="", control_socket=Path("/nonexistent/s"),
                                     amqp_url="amqp://guest:guest@127.0.0.1/axis-no-such-vhost")
    with TestClient(create_app(dead)) as c:
        r = c.post(f"/admin/agencies/{G03}/move", json={"server": "d-g03"}, headers=auth)
        assert r.status_code == 503 and "no supervisor" in r.json()["detail"]


def test_announced_file_lets_every_router_accept_the_future_server(workdir: tuple[Path, dict[str, Any]]) -> None:
    """Why the announce step: during the routers' reload one router may still hold the announced file while the
    new server already sends status 01s; both files accept them, the file before the announcement does not."""
    from axis.core.reasons import Refusal
    from axis.core.routing import route_status

    path, _ = workdir
    before = load_config(path).directory
    announced = announce_move(path, G03, "d-g03").directory
    final = move_agency(path, G03, "d-g03").directory
    with pytest.raises(Refusal, match="must come from its server"):
        route_status(before, G03, G22, "d-g03")
    for directory in (announced, final):
        assert route_status(directory, G03, G22, "d-g03").server.id == "d1"
        assert route_status(directory, G03, G22, "sh").server.id == "d1"  # the old server's in-flight 01s
    with pytest.raises(Refusal):
        route_status(final, G03, G22, "d1")  # any other server is still refused
