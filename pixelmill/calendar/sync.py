"""The ledger follows the workflow files: entries of the served workflows (``on.at``, ``on.calendar``)
are added, changed while still only planned, and skipped when removed from their file.

Entries added or edited through the API (``source: api``) and entries whose post run exists are left as
they are. Any number of processes may sync at once: an insert that loses the race is ignored, every
update is the ledger's conditional write.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import ledger as L


def sync_entries(store, workflows, now) -> dict:
    """Bring the ledger in line with the served workflows' entries (``now`` is the clock); returns counts."""
    added = updated = removed = 0
    created = L.utcnow_naive(now())
    for loaded in workflows.all():
        cal = loaded.calendar
        wanted = {e.id: e for e in cal.entries}
        with store.engine.connect() as conn:
            rows = {r.entry_id: r for r in conn.execute(select(L.ENTRIES).where(
                L.ENTRIES.c.workflow == loaded.name))}
        for entry in cal.entries:
            row = rows.get(entry.id)
            slot = L.utcnow_naive(entry.slot)
            values = dict(slot=slot, inputs=entry.inputs, target=entry.target, where=entry.where,
                          needs_approval=cal.settings.approval)
            if row is None:
                try:
                    with store.writing() as conn:
                        conn.execute(L.ENTRIES.insert().values(
                            workflow=loaded.name, entry_id=entry.id, status=L.APPROVED if entry.approved
                            else L.PLANNED, source="file", version=1, updated_at=created, note="", **values))
                    added += 1
                except IntegrityError:  # another process added it a moment ago
                    pass
            elif row.source == "file" and row.status == L.PLANNED and row.post_run_id is None and \
                    (row.slot, row.inputs, row.target, bool(row.needs_approval)) != \
                    (slot, entry.inputs, entry.target, cal.settings.approval):
                with store.writing() as conn:
                    updated += L.update_entry(conn, loaded.name, entry.id, row.version, {L.PLANNED}, now(), **values)
        for entry_id, row in rows.items():
            if entry_id not in wanted and row.source == "file" and row.status in L.OPEN and \
                    row.post_run_id is None:
                with store.writing() as conn:
                    removed += L.update_entry(conn, loaded.name, entry_id, row.version, set(L.OPEN), now(),
                                              status=L.SKIPPED, note="removed from the calendar file")
    return {"added": added, "updated": updated, "removed": removed}
