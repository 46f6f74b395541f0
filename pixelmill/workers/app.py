"""The Celery app: settings fit for long GPU jobs, and the one task, ``pixelmill.execute_run(run_id)``.

- ``worker_pool=solo``, one run at a time per process: no fork after CUDA is initialised, models stay
  loaded in the one process between runs (run one worker per GPU).
- ``worker_prefetch_multiplier=1``: a busy worker does not hold runs another idle worker could start.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: the message is acknowledged after the run, so a
  worker that dies mid-run does not lose it.
- the Redis ``visibility_timeout`` above the longest allowed run, or Redis redelivers a message whose run
  is still executing.
- no result backend: the run store is the source of truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import Celery

TASK = "pixelmill.execute_run"
DEFAULT_VISIBILITY_TIMEOUT = 6 * 3600.0


@dataclass
class CelerySettings:
    broker_url: str
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT

    @classmethod
    def from_env(cls, environ=None) -> CelerySettings:
        env = os.environ if environ is None else environ
        url = env.get("PIXELMILL_BROKER_URL", "")
        if not url:
            raise ValueError("PIXELMILL_EXECUTOR=celery needs PIXELMILL_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
        vt = float(env.get("PIXELMILL_VISIBILITY_TIMEOUT") or DEFAULT_VISIBILITY_TIMEOUT)
        return cls(broker_url=url, visibility_timeout=vt)


def make_celery(settings: CelerySettings, execute=None) -> Celery:
    """The app; ``execute(run_id, queue)`` is given in a worker process (the API only sends); ``queue`` is
    the queue the message came from."""
    app = Celery("pixelmill", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options={"visibility_timeout": int(settings.visibility_timeout)},
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="default",
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if execute is not None:
        @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
        def execute_run(task, run_id: str) -> None:
            info = task.request.delivery_info or {}
            execute(run_id, info.get("routing_key") or None)
    return app


def send_run(app: Celery, run_id: str, queue: str) -> None:
    app.send_task(TASK, args=[run_id], queue=queue)
