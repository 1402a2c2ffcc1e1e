"""A blob store of each kind on real storage: a directory (``file``) and a PostgreSQL database of the test's own,
dropped afterwards (``postgres``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from axis.blobs import BlobStore, open_blobs


@pytest.fixture
def pg_blobs_url() -> Iterator[str]:
    from tests.conftest import fresh_pg_database

    with fresh_pg_database("axis_blobs") as url:
        yield url


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """'' (the directory store) or the URL of a fresh PostgreSQL database."""
    return "" if request.param == "file" else str(request.getfixturevalue("pg_blobs_url"))


@pytest.fixture
def store(tmp_path: Path, store_url: str) -> Iterator[BlobStore]:
    blobs = open_blobs(tmp_path / "blobs", store_url)
    yield blobs
    blobs.close()
