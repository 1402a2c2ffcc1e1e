"""Moving an agency's rows (inbox, sent documents, statuses) from its old server's store to its new one.

Part of moving an agency to another server mid-run (docs/core.md, "Moving an agency"). Rows keep their ids (a
client's references stay valid) and are inserted with ``ON CONFLICT DO NOTHING``: the inbox's unique key
(recipient, sender, DocumentId, BussinessDocType) means a document the new server already stored (a queued
delivery forwarded to it) is kept once. The copy is committed on the new store before the rows are deleted from
the old one, so a crash in between leaves the rows in both and re-running finishes the move: idempotent.
Run it once the old server no longer hosts the agency (restarted with the new configuration), so nothing new
arrives there behind the copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from endpoints.inbox import TABLES, InboxStore, open_inbox

BATCH = 500


@dataclass(frozen=True, slots=True)
class Moved:
    received: int
    sent: int
    statuses: int


async def _move_table(old: InboxStore, new: InboxStore, table: str, agency: str, keep_id: bool) -> int:
    cols = [c.name for c in TABLES[table].c if keep_id or c.name != "id"]
    moved = 0
    while True:
        rows = await old.rows_of(table, agency, BATCH)
        if not rows:
            return moved
        await new.insert_rows(table, [{c: r[c] for c in cols} for r in rows])
        await old.delete_rows(table, [r["id"] for r in rows])
        moved += len(rows)


async def move_agency_rows(old: InboxStore, new: InboxStore, agency: str) -> Moved:
    """Move every row of ``agency`` from ``old`` to ``new`` (idempotent; see the module docstring). Two servers
    sharing one database need no move: nothing is done (deleting after a no-op copy would lose the rows)."""
    if old.location == new.location:
        return Moved(0, 0, 0)
    return Moved(
        received=await _move_table(old, new, "axis_received", agency, keep_id=True),
        sent=await _move_table(old, new, "axis_sent", agency, keep_id=True),
        statuses=await _move_table(old, new, "axis_status", agency, keep_id=False),
    )


async def move_agency(old_url: str, new_url: str, agency: str) -> Moved:
    """:func:`move_agency_rows` between two inbox store URLs."""
    old, new = await open_inbox(old_url), await open_inbox(new_url)
    try:
        return await move_agency_rows(old, new, agency)
    finally:
        await old.close()
        await new.close()
