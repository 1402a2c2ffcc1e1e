"""axis backup / restore with the statistics in PostgreSQL: pg_dump into the backup, pg_restore (only with
--overwrite-databases) into the database the restored configuration names."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from axis.cli import app
from axis.config import generate_workdir
from axis.stats.records import Accepted
from axis.stats.store import StatsStore
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.postgres
PASS = "postgres backup passphrase"


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own (asyncpg-style URL), dropped afterwards."""
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not available")
    with fresh_pg_database("axis_backup") as url:
        yield url.replace("postgresql://", "postgresql+asyncpg://")


def accepted(n: int) -> Accepted:
    return Accepted(key=f"000.00.00.G01|doc-{n}|0", sender="000.00.00.G01", sender_kind="dedicated",
                    document_id=f"doc-{n}", doc_type=0, size=100, recipients=(("000.00.00.G03", "shared"),),
                    latency_ms=1.0, at=datetime.now(UTC))


async def record(url: str, rows: range) -> int:
    store = await StatsStore.open(url)
    try:
        await store.record(accepted=[accepted(n) for n in rows])
        async with store.engine.connect() as conn:
            from sqlalchemy import func, select

            from axis.stats.store import accepted_table

            return int((await conn.execute(select(func.count()).select_from(accepted_table))).scalar_one())
    finally:
        await store.close()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"AXIS_BACKUP_PASSPHRASE": PASS})
    return result.exit_code, result.stdout, result.stderr


def test_statistics_in_postgres(tmp_path: Path, database: str) -> None:
    path, _ = generate_workdir(tmp_path / "w", [("000.00.00.G01", "A", "d1"), ("000.00.00.G03", "B", "sh")],
                               [("d1", "dedicated"), ("sh", "shared")], tls=False, stats_url=database)
    assert yaml.safe_load(path.read_text())["stats_url"] == database
    assert asyncio.run(record(database, range(5))) == 5
    code, out, err = run("backup", "--work-dir", str(path.parent), "-o", str(tmp_path / "b"), "--json")
    assert code == 0, err
    assert orjson.loads(out)["summary"].get("axis_accepted") is None  # counted from SQLite snapshots only
    assert asyncio.run(record(database, range(5, 9))) == 9  # after the backup
    code, _, err = run("restore", str(tmp_path / "b"), "--work-dir", str(tmp_path / "r1"))
    assert code == 2 and "--overwrite-databases" in err and not (tmp_path / "r1").exists()
    code, out, err = run("restore", str(tmp_path / "b"), "--work-dir", str(tmp_path / "r2"), "--overwrite-databases")
    assert code == 0, err + out
    assert asyncio.run(record(database, range(0))) == 5  # the database is as it was at the backup
