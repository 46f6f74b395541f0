"""The content calendar: dated entries of a workflow (``on.at`` and an ``on.calendar`` file), their ledger
in the run store's database, and the service that drafts, posts and reports them. See docs/calendar.md.

``entries`` is read by the loader (no server import); ``ledger`` and ``service`` are used by the server.
"""
