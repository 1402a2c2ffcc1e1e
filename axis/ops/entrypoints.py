"""The endpoint servers' code, reached through the ``axis.endpoints`` entry points of the installed package
(``pyproject.toml``), never by import: dependencies point one way (``endpoints`` uses ``axis``; ``axis`` only
starts endpoint hosts and moves their inbox rows)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any


def endpoints_entry(name: str) -> Any:
    """The object the ``axis.endpoints`` entry point ``name`` names (``serve``, ``move_agency_rows``)."""
    found = entry_points(group="axis.endpoints", name=name)
    if not found:
        raise RuntimeError(f"no axis.endpoints entry point {name!r}: reinstall axis (pip install -e .)")
    return next(iter(found)).load()
