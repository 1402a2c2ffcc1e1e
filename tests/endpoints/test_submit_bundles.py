"""How large a door's document bundle may be: never more than one inline document (the router sizes its prefetch
by that, axis.router.blobs.prefetch_for)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from axis.core.bundle import BUNDLE_BYTES
from endpoints.link import submit_bundle_bytes


def config(inline_limit: int) -> Any:
    return SimpleNamespace(limits=SimpleNamespace(inline_limit=inline_limit))


def test_a_bundle_is_never_larger_than_an_inline_document() -> None:
    assert submit_bundle_bytes(config(25 * 1024 * 1024)) == BUNDLE_BYTES
    assert submit_bundle_bytes(config(200_000)) == 200_000  # big documents on, a small inline limit
