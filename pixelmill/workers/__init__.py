"""Scale-out: runs executed by ``pixelmill worker`` processes through Celery 5 with a Redis broker.

The API process writes a queued run to the store and sends only its id (``pixelmill.execute_run``) to a
queue; a worker claims the run in the store (the atomic queued -> running claim makes it execute once,
whatever Celery delivers) and executes it. The store stays the source of truth: no result backend.
"""
