"""The content calendar: dated entries of a workflow (``on.at`` and an ``on.calendar`` file), their ledger
in the run store's database, and the service that drafts, posts and reports them. See docs/calendar.md.

``entries`` is read by the loader (no server import). The server holds a ``service.CalendarService``:
its clock (``tick``) and lifecycle, built on ``sync`` (the ledger follows the files), ``runs`` (the draft
and post runs an entry makes, and their outcomes), ``edits`` (what people do: add, move, approve, skip,
regenerate) and ``ledger`` (the tables and their conditional write).
"""
