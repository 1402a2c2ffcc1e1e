"""An agency code change in the inbox store (InboxStore.rename_agency, run by the endpoint servers at every start and
reload for the agencies with aliases), on both databases: inbox, sent documents and statuses follow the agency to
its new code, a delivery stored under both codes around the change is kept once, other agencies are untouched,
and a second run does nothing."""

from __future__ import annotations

from typing import Any

from endpoints.inbox import InboxStore
from tests.endpoints.test_inbox import db_url, store

__all__ = ["db_url", "store"]
OLD, NEW, S, OTHER = "000.00.00.G10", "G10.2", "000.00.00.G23", "000.00.00.H98"


async def test_rows_follow_the_new_code(store: InboxStore) -> None:
    doc = f"{S},2026/11/28,{id(store)}/VPCP"
    kw: dict[str, Any] = {"sender": S, "doc_type": 0, "related_document_id": None, "subject": "x", "data": b"<edXML/>"}
    first = await store.store_received([OLD, OTHER], document_id=doc, **kw)
    both = f"{doc}-both"  # stored under the old code and again under the new one (a delivery around the change)
    await store.store_received([OLD], document_id=both, **kw)
    await store.store_received([NEW], document_id=both, **kw)
    await store.store_sent(OLD, document_id=f"{doc}-sent", doc_type=0, recipients=[S], subject="s", data=b"<x/>")
    await store.store_status(OLD, document_id=f"{doc}-sent", from_code=S, code="01", description="",
                             timestamp="2026/11/28 08:00:00")
    assert await store.rename_agency([OLD, NEW], NEW) >= 3
    assert sorted(i["document_id"] for i in await store.inbox(NEW)) == [doc, both]
    assert await store.inbox(OLD) == [] and await store.count_received(NEW) == 2
    assert [i["document_id"] for i in await store.inbox(OTHER)] == [doc]  # the other recipient's row stays its own
    assert await store.received_row(NEW, first[0].id) is not None  # ids are kept: clients' references stay valid
    assert await store.sent_recipients(NEW, f"{doc}-sent") is not None
    assert [s["code"] for s in await store.statuses_for(NEW, f"{doc}-sent")] == ["01"]
    assert await store.rename_agency([OLD], NEW) == 0  # done: idempotent
    assert await store.rename_agency([], NEW) == 0
