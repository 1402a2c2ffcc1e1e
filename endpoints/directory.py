"""``GET /v1/directory?since=VERSION`` (contract section 7): the directory for agency software, by version.

Any agency token of the server may read it (the directory is what every agency needs to address documents).
The journal (:mod:`axis.core.directory_versions`) is advanced to the server's current configuration on the first
request after a start or a reload — off the event loop, under the journal's file lock
(:func:`axis.config.directory_journal.sync_journal`) — and kept per configuration object: every other request
answers from memory. The full listing (no ``since``) is serialized once per journal (about 11 MB and 0.3 s at
120,000 agencies); answers to ``since`` are computed per request (milliseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from axis.config import Config, ConfigError
from axis.config.directory_journal import sync_journal
from axis.core.directory_versions import DirectoryJournal, changes_since
from axis.core.reasons import Reason, Refusal


class JournalCache:
    """The journal of the latest configuration seen (one advance per configuration object)."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._journal: DirectoryJournal | None = None
        self._full: tuple[DirectoryJournal, bytes] | None = None
        self._lock = asyncio.Lock()

    async def get(self, config: Config) -> DirectoryJournal:
        async with self._lock:
            if self._config is not config or self._journal is None:
                self._journal = await asyncio.to_thread(sync_journal, config)
                self._config = config
            return self._journal

    async def full(self, journal: DirectoryJournal) -> bytes:
        """The full listing of ``journal``, serialized once."""
        if self._full is None or self._full[0] is not journal:
            body = await asyncio.to_thread(lambda: orjson.dumps(changes_since(journal)))
            self._full = (journal, body)
        return self._full[1]


def parse_since(value: str | None) -> int | None:
    """``since`` as a version (None: everything); SCHEMA_INVALID when it is not a non-negative integer."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise Refusal(Reason.SCHEMA_INVALID, f"since must be a directory version (a non-negative integer), "
                                             f"not {value[:40]!r}")
    return int(value)


def add_directory_routes(app: FastAPI, *, caller: Callable[[Request], str], config: Callable[[], Config]) -> None:
    """The route of this module on ``app``: ``caller`` authenticates an agency, ``config`` is the server's current
    configuration (replaced on reloads)."""
    cache = JournalCache()

    @app.get("/v1/directory", response_model=None)
    async def directory(request: Request, since: str | None = None) -> Response:
        caller(request)
        wanted = parse_since(since)
        try:
            journal = await cache.get(config())
        except (OSError, ConfigError) as exc:  # a journal that cannot be read or written: say so, no traceback
            raise StarletteHTTPException(503, f"the directory journal is unavailable: {exc}") from None
        if not wanted or wanted > journal.version:
            body = await cache.full(journal)
        else:
            body = orjson.dumps(changes_since(journal, wanted))
        return Response(body, media_type="application/json")
