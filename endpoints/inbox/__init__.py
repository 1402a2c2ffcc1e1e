"""The endpoint server's store (received documents, sent documents, statuses): the interface and schema
(:mod:`endpoints.inbox.store`) and two backends, chosen by URL by :func:`open_inbox`."""

from __future__ import annotations

from endpoints.inbox.store import (
    TABLES,
    InboxStore,
    ReceivedHead,
    ReceivedRow,
    SentRow,
    StoreBusy,
    Stored,
    is_sqlite,
    normalize_url,
    sqlite_path,
)

__all__ = ["TABLES", "InboxStore", "ReceivedHead", "ReceivedRow", "SentRow", "StoreBusy", "Stored", "open_inbox"]


async def open_inbox(url: str) -> InboxStore:
    """The store at ``url``: SQLite (``sqlite:///…``, the default) or any SQLAlchemy async URL (PostgreSQL)."""
    if is_sqlite(url):
        from endpoints.inbox.sqlite import SqliteInboxStore

        return await SqliteInboxStore.open_path(sqlite_path(url))
    from endpoints.inbox.sql import SqlInboxStore

    return await SqlInboxStore.open_url(normalize_url(url))
