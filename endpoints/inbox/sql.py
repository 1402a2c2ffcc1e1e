"""The inbox store on SQLAlchemy async Core: the PostgreSQL backend of :class:`endpoints.inbox.InboxStore`.

(It works on any SQLAlchemy async URL; SQLite URLs go to :mod:`endpoints.inbox.sqlite` instead.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex

from axis.stats.store import add_missing_columns
from endpoints.inbox.store import (
    ADDED_COLUMNS,
    AGENCY_TABLES,
    KINDS,
    TABLES,
    InboxStore,
    ReceivedHead,
    ReceivedRow,
    SentRow,
    Stored,
    document_size,
    inbox_item,
    item_states,
    metadata,
    received,
    sent,
    status_item,
    statuses,
    uncollected_item,
    unique_key,
)


class SqlInboxStore(InboxStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.location = engine.url.render_as_string(hide_password=False)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # The hot INSERTs are built once and executed with parameters: building `.values(**literals)` per call
        # coerced every value into a bind parameter and regenerated the statement's cache key each time.
        self._ins_received = self._insert(received).on_conflict_do_nothing(
            index_elements=["agency", "sender", "document_id", "doc_type"])
        self._ins_sent = self._insert(sent).on_conflict_do_nothing(index_elements=["agency", "document_id", "doc_type"])
        self._ins_status = self._insert(statuses).on_conflict_do_nothing(
            index_elements=["agency", "document_id", "from_code", "code", "timestamp"])

    @classmethod
    async def open_url(cls, url: str) -> SqlInboxStore:
        engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        store = cls(engine)
        for attempt in range(5):  # several servers may create the schema in one database at the same moment
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.create_all, checkfirst=True)
                    await conn.run_sync(add_missing_columns, ADDED_COLUMNS)
                    for table in metadata.sorted_tables:  # indexes added since a table was created, too
                        for index in table.indexes:
                            await conn.execute(CreateIndex(index, if_not_exists=True))
                break
            except sa.exc.DBAPIError as exc:
                if attempt == 4 or ("exist" not in str(exc).lower() and "duplicate" not in str(exc).lower()):
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    # -- received ----------------------------------------------------------------------------------------------
    async def store_received(
        self, agencies: Sequence[str], *, sender: str, document_id: str, doc_type: int,
        related_document_id: str | None, subject: str, data: bytes, head: ReceivedHead | None = None,
    ) -> list[Stored]:
        now = time.time()
        out: list[Stored] = []
        kept = {"sha256": head.sha256, "doc_code": head.doc_code,
                "promulgation_date": head.promulgation_date} if head is not None else {}
        async with self.engine.begin() as conn:
            for agency in agencies:
                rid = uuid.uuid4().hex
                result = await conn.execute(self._ins_received, dict(
                    id=rid, agency=agency, sender=sender, document_id=document_id, doc_type=doc_type,
                    related_document_id=related_document_id, kind=KINDS.get(doc_type, "edoc"), subject=subject,
                    size=document_size(data), data=data, received_at=now, **kept,
                ))
                if result.rowcount == 1:
                    out.append(Stored(rid, agency, now, True))
                    continue
                row = (await conn.execute(
                    sa.select(received.c.id, received.c.received_at).where(
                        received.c.agency == agency, received.c.sender == sender,
                        received.c.document_id == document_id, received.c.doc_type == doc_type)
                )).one()
                out.append(Stored(row.id, agency, row.received_at, False))
        return out

    async def inbox(self, agency: str, *, unread: bool = False, limit: int = 100, offset: int = 0
                    ) -> list[dict[str, Any]]:
        original = received.alias("original")
        related_id = (sa.select(original.c.id).where(
            original.c.agency == received.c.agency, original.c.sender == received.c.sender,
            original.c.document_id == received.c.related_document_id, original.c.doc_type == 0)
            .scalar_subquery().label("related_id"))
        q = sa.select(received.c.id, received.c.document_id, received.c.sender, received.c.subject,
                      received.c.received_at, received.c.kind, received.c.doc_type, received.c.related_document_id,
                      related_id, received.c.size, received.c.acked_at).where(received.c.agency == agency)
        if unread:
            q = q.where(received.c.acked_at.is_(None))
        q = q.order_by(received.c.received_at, received.c.id).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [inbox_item(r) for r in rows]

    async def received_row(self, agency: str, rid: str) -> ReceivedRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                sa.select(received).where(received.c.id == rid, received.c.agency == agency))).one_or_none()
        return None if row is None else ReceivedRow(*row)

    async def received_documents(self, agency: str, sender: str, document_id: str) -> list[ReceivedRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(received).where(
                received.c.agency == agency, received.c.sender == sender, received.c.document_id == document_id)
                .order_by(received.c.doc_type))).all()
        return [ReceivedRow(*row) for row in rows]

    async def ack(self, agency: str, rid: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(received).where(received.c.id == rid, received.c.agency == agency,
                                          received.c.acked_at.is_(None)).values(acked_at=time.time()))
            if result.rowcount:
                return True
            found = await conn.execute(sa.select(received.c.id).where(received.c.id == rid,
                                                                       received.c.agency == agency))
            return found.one_or_none() is not None

    async def count_received(self, agency: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(received)
        if agency:
            q = q.where(received.c.agency == agency)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def uncollected(self, before: float, *, agency: str | None = None, limit: int = 100, offset: int = 0
                          ) -> list[dict[str, Any]]:
        q = sa.select(received.c.id, received.c.document_id, received.c.sender, received.c.agency,
                      received.c.received_at).where(received.c.acked_at.is_(None), received.c.received_at < before)
        if agency:
            q = q.where(received.c.agency == agency)
        q = q.order_by(received.c.received_at, received.c.id).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [uncollected_item(*row) for row in rows]

    # -- sent --------------------------------------------------------------------------------------------------
    async def store_sent(self, agency: str, *, document_id: str, doc_type: int, recipients: Sequence[str],
                         subject: str, data: bytes) -> tuple[str, bool]:
        rid = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            result = await conn.execute(self._ins_sent, dict(
                id=rid, agency=agency, document_id=document_id, doc_type=doc_type,
                recipients=orjson.dumps(list(recipients)).decode(), subject=subject, data=data, created_at=time.time(),
            ))
            if result.rowcount == 1:
                return rid, True
            row = (await conn.execute(sa.select(sent.c.id).where(
                sent.c.agency == agency, sent.c.document_id == document_id, sent.c.doc_type == doc_type))).one()
            return row.id, False

    async def sent_row(self, agency: str, rid: str) -> SentRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                sa.select(sent).where(sent.c.id == rid, sent.c.agency == agency))).one_or_none()
        return None if row is None else SentRow(*row)

    async def sent_recipients(self, agency: str, document_id: str) -> list[str] | None:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(sent.c.recipients).where(
                sent.c.agency == agency, sent.c.document_id == document_id))).all()
        return [r for (recipients,) in rows for r in orjson.loads(recipients)] if rows else None

    async def sent_documents(self, agency: str, document_id: str) -> list[SentRow]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(sent).where(sent.c.agency == agency, sent.c.document_id == document_id)
                                       .order_by(sent.c.doc_type))).all()
        return [SentRow(*row) for row in rows]

    # -- statuses ----------------------------------------------------------------------------------------------
    async def store_status(self, agency: str, *, document_id: str, from_code: str, code: str, description: str,
                           timestamp: str, reason: str | None = None) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(self._ins_status, dict(
                agency=agency, document_id=document_id, from_code=from_code, code=code, reason=reason,
                description=description, timestamp=timestamp, received_at=time.time(),
            ))
            return result.rowcount == 1

    async def statuses_for(self, agency: str, document_id: str) -> list[dict[str, Any]]:
        q = (sa.select(statuses).where(statuses.c.agency == agency, statuses.c.document_id == document_id)
             .order_by(statuses.c.received_at, statuses.c.id))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [status_item(r) for r in rows]

    async def statuses_of(self, agency: str) -> list[dict[str, Any]]:
        q = sa.select(statuses).where(statuses.c.agency == agency).order_by(statuses.c.received_at, statuses.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": r.id, "document_id": r.document_id, **status_item(r)} for r in rows]

    async def status_by_id(self, agency: str, status_id: int) -> dict[str, Any] | None:
        q = sa.select(statuses).where(statuses.c.id == status_id, statuses.c.agency == agency)
        async with self.engine.connect() as conn:
            r = (await conn.execute(q)).one_or_none()
        return None if r is None else {"id": r.id, "document_id": r.document_id, **status_item(r)}

    async def sent_list(self, agency: str, limit: int = 1000) -> list[dict[str, Any]]:
        q = (sa.select(sent.c.id, sent.c.document_id, sent.c.doc_type, sent.c.recipients, sent.c.subject,
                       sent.c.created_at).where(sent.c.agency == agency)
             .order_by(sent.c.created_at.desc(), sent.c.id.desc()).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": r.id, "document_id": r.document_id, "doc_type": r.doc_type,
                 "recipients": orjson.loads(r.recipients), "subject": r.subject, "created_at": r.created_at}
                for r in reversed(rows)]

    # -- what agency software recorded about its items -------------------------------------------------------
    async def item_states(self, agency: str) -> dict[str, str]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(item_states.c.item, item_states.c.state)
                                       .where(item_states.c.agency == agency))).all()
        return {r.item: r.state for r in rows}

    async def set_item_state(self, agency: str, item: str, state: str) -> None:
        ins = self._insert(item_states).values(agency=agency, item=item, state=state, updated_at=time.time())
        upsert = ins.on_conflict_do_update(index_elements=["agency", "item"],
                                           set_={"state": ins.excluded.state, "updated_at": ins.excluded.updated_at})
        async with self.engine.begin() as conn:
            await conn.execute(upsert)

    # -- moving an agency --------------------------------------------------------------------------------------
    async def rows_of(self, table: str, agency: str, limit: int) -> list[dict[str, Any]]:
        t = TABLES[table]
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t).where(t.c.agency == agency).order_by(t.c.id).limit(limit))
                    ).mappings().all()
        return [dict(r) for r in rows]

    async def insert_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            async with self.engine.begin() as conn:
                await conn.execute(self._insert(TABLES[table]).on_conflict_do_nothing(), list(rows))

    async def delete_rows(self, table: str, ids: Sequence[Any]) -> None:
        t = TABLES[table]
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(t).where(t.c.id.in_(list(ids))))

    async def rename_agency(self, former: Sequence[str], code: str) -> int:
        old = [c for c in dict.fromkeys(former) if c != code]
        if not old:
            return 0
        renamed = 0
        async with self.engine.begin() as conn:
            for t in AGENCY_TABLES.values():
                where: sa.ColumnElement[bool] = t.c.agency.in_(old)
                key = unique_key(t)
                if key:  # a row already there under the new code stays, the old one goes
                    other = t.alias("other")
                    where = sa.and_(where, ~sa.exists().where(other.c.agency == code,
                                                             *[other.c[k] == t.c[k] for k in key]))
                renamed += (await conn.execute(sa.update(t).where(where).values(agency=code))).rowcount
                await conn.execute(sa.delete(t).where(t.c.agency.in_(old)))
        return renamed
