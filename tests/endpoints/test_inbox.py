"""The inbox store on both databases: idempotent delivery, isolation by agency, ack, sent and statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from endpoints.inbox import InboxStore, open_inbox

A, B, S = "000.00.00.H53", "000.00.00.H41", "000.00.00.G22"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))  # a fresh database per test session


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[InboxStore]:
    st = await open_inbox(db_url)
    try:
        yield st
    finally:
        await st.close()


async def test_delivery_is_stored_once_per_recipient(store: InboxStore) -> None:
    doc = f"{S},2019/03/12,{id(store)}/VPCP"
    kw = {"sender": S, "document_id": doc, "doc_type": 0, "related_document_id": None, "subject": "Hà Nội",
          "data": b"<edXML/>"}
    first = await store.store_received([A, B], **kw)
    again = await store.store_received([A, B], **kw)
    assert [s.new for s in first] == [True, True]
    assert [s.new for s in again] == [False, False]
    assert [s.id for s in again] == [s.id for s in first]
    assert await store.count_received(A) == 1 and await store.count_received(B) == 1
    items = await store.inbox(A)
    assert [i["document_id"] for i in items] == [doc]
    # isolation: B's row is not A's
    b_id = first[1].id
    assert await store.received_row(A, b_id) is None
    assert await store.ack(A, b_id) is False
    assert await store.ack(A, first[0].id) is True
    assert await store.inbox(A, unread=True) == []


async def test_sent_and_statuses_are_idempotent(store: InboxStore) -> None:
    doc = f"{S},2019/03/13,{id(store)}/VPCP"
    rid, new = await store.store_sent(S, document_id=doc, doc_type=0, recipients=[A], subject="x", data=b"<x/>")
    rid2, new2 = await store.store_sent(S, document_id=doc, doc_type=0, recipients=[A], subject="x", data=b"<x/>")
    assert new and not new2 and rid2 == rid
    st = {"document_id": doc, "from_code": A, "code": "01", "description": "arrived",
          "timestamp": "2019/03/13 08:00:00"}
    assert await store.store_status(S, **st) is True
    assert await store.store_status(S, **st) is False
    assert [s["code"] for s in await store.statuses_for(S, doc)] == ["01"]


async def test_sent_list_statuses_of_and_item_states(store: InboxStore) -> None:
    """What the VPCP SDK facade (endpoints.vxp) reads beside /v1: the sent documents without their bytes, every
    status about them with its row id, and the state agency software recorded per item (last one wins, per agency)."""
    rid, _ = await store.store_sent("A", document_id="D1", doc_type=0, recipients=["B", "C"], subject="S", data=b"x")
    await store.store_sent("Z", document_id="D9", doc_type=0, recipients=["B"], subject="other", data=b"y")
    [row] = await store.sent_list("A")
    assert (row["id"], row["document_id"], row["doc_type"], row["recipients"], row["subject"]) == (
        rid, "D1", 0, ["B", "C"], "S")
    assert isinstance(row["created_at"], float) and "data" not in row
    await store.store_status("A", document_id="D1", from_code="B", code="01", description="", timestamp="t1")
    await store.store_status("Z", document_id="D9", from_code="B", code="01", description="", timestamp="t1")
    [status] = await store.statuses_of("A")
    assert (status["document_id"], status["from"], status["code"]) == ("D1", "B", "01")
    assert isinstance(status["id"], int)
    assert await store.status_by_id("A", status["id"]) == status
    assert await store.status_by_id("Z", status["id"]) is None  # another agency's id
    for n in range(3):
        await store.store_sent("A", document_id=f"E{n}", doc_type=0, recipients=["B"], subject="", data=b"z")
    assert [d["document_id"] for d in await store.sent_list("A", limit=2)] == ["E1", "E2"]  # the last, oldest first
    assert await store.item_states("A") == {}
    await store.set_item_state("A", "item1", "processing")
    await store.set_item_state("A", "item1", "done")
    await store.set_item_state("B", "item2", "fail")
    assert await store.item_states("A") == {"item1": "done"}
    await store.set_item_state("B", "item1", "fail")  # the same item id of another agency is another row
    assert await store.item_states("A") == {"item1": "done"}
    assert await store.item_states("B") == {"item1": "fail", "item2": "fail"}


async def test_item_states_follow_a_code_change(store: InboxStore) -> None:
    """A renamed agency keeps what it recorded with updateStatus (InboxStore.rename_agency); where the new code
    already has a mark for the same item, that one stays."""
    await store.set_item_state("OLD", "i1", "processing")
    await store.set_item_state("OLD", "i2", "fail")
    await store.set_item_state("NEW", "i2", "done")
    await store.set_item_state("OTHER", "i1", "fail")
    await store.rename_agency(["OLD"], "NEW")
    assert await store.item_states("NEW") == {"i1": "processing", "i2": "done"}
    assert await store.item_states("OLD") == {} and await store.item_states("OTHER") == {"i1": "fail"}
