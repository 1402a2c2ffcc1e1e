"""Shared fixtures: paths, and per-run isolation on the real RabbitMQ and PostgreSQL on 127.0.0.1.

Every test run gets its own RabbitMQ vhost and its own PostgreSQL database, removed afterwards, so a broker or
database left dirty by an earlier run cannot change a result. Services that cannot be reached make the tests
that need them skip with a visible reason (CI starts them first: scripts/services.sh).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# AXIS_SAMPLES overrides the location; otherwise ../shared beside the clone (or one level up, for git worktrees).
SAMPLES = Path(
    os.environ.get("AXIS_SAMPLES")
    or next(
        (p / "shared" / "edxml-samples" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
        ROOT.parent / "shared" / "edxml-samples",
    )
)

RABBIT_HOST = os.environ.get("AXIS_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_MGMT = os.environ.get("AXIS_TEST_RABBIT_MGMT", f"http://{RABBIT_HOST}:15672")
RABBIT_AUTH = ("guest", "guest")
PG_DSN_BASE = os.environ.get("AXIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _no_check_records_left() -> Iterator[None]:
    """The endpoint hosts' records of checked documents (endpoints.checked) live in shared memory, one directory per
    work directory: the ones this run made are removed after it (nothing left in /dev/shm)."""
    import shutil

    from axis.config.workdir import CHECK_RECORDS_PREFIX, SHM

    pattern = f"{CHECK_RECORDS_PREFIX}{os.getuid()}-*"
    before = set(SHM.glob(pattern))
    yield
    for made in set(SHM.glob(pattern)) - before:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"sample files not found at {SAMPLES} (../shared beside the clone)")
    return SAMPLES


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session; yields its AMQP URL and deletes it afterwards."""
    if not _port_open(RABBIT_HOST, 5672):
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
    if not _port_open(RABBIT_HOST, 15672):
        pytest.skip("RabbitMQ management API not reachable on :15672 (rabbitmq-plugins enable rabbitmq_management)")
    vhost = f"axis-test-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=RABBIT_MGMT, auth=RABBIT_AUTH, timeout=30) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(
            f"/api/permissions/{vhost}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        try:
            yield f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
        finally:
            http.delete(f"/api/vhosts/{vhost}")
            from axis.broker.users import delete_users_with_prefix

            delete_users_with_prefix(RABBIT_MGMT, RABBIT_AUTH, f"{vhost}.")  # axes' broker users (axis up)


@pytest.fixture(scope="session")
def rabbit_mgmt(amqp_url: str) -> tuple[str, tuple[str, str], str]:
    """(management base URL, auth, vhost) for the session's vhost."""
    return RABBIT_MGMT, RABBIT_AUTH, amqp_url.rsplit("/", 1)[1]


@pytest.fixture
def vhost_url(amqp_url: str, rabbit_mgmt: tuple[str, tuple[str, str], str]) -> Iterator[str]:
    """A fresh vhost for ONE test (its queues start empty), deleted after it with the axis's broker users."""
    from axis.broker.users import delete_users_with_prefix

    base, auth, _ = rabbit_mgmt
    vhost = f"axis-test-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=base, auth=auth, timeout=30) as http:
        http.put(f"/api/vhosts/{vhost}").raise_for_status()
        http.put(f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
                 ).raise_for_status()
        try:
            yield amqp_url.rsplit("/", 1)[0] + "/" + vhost
        finally:
            http.delete(f"/api/vhosts/{vhost}")
            delete_users_with_prefix(base, auth, f"{vhost}.")  # the axis's broker users (axis.broker.users)


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "axis_test") -> Iterator[str]:
    """A PostgreSQL database of its own (asyncpg-style URL ``postgresql://…/<prefix>_<random>``), dropped afterwards
    (connections still open are closed: WITH FORCE); skips the test when PostgreSQL cannot be reached."""
    if not _port_open("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import asyncio

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{PG_DSN_BASE}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.skip(f"cannot create a PostgreSQL test database: {exc}")
    try:
        yield f"{PG_DSN_BASE}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (asyncpg-style URL); dropped afterwards."""
    with fresh_pg_database() as url:
        yield url
