"""Serve an app under waitress with signal handling: SIGTERM/SIGINT stop, SIGHUP reloads workflows."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from waitress import create_server

from .auth import check_exposure

log = logging.getLogger(__name__)


def make_server(app, host: str = "127.0.0.1", port: int = 8080, threads: int | None = None):
    svc = app.extensions["pixelmill"]
    limit = svc.config.max_body
    return create_server(app, host=host, port=port, threads=threads or svc.config.http_threads,
                         ident="pixelmill", channel_timeout=120, connection_limit=1000, backlog=1024,
                         # waitress must let oversized bodies through so the app can answer 413 as JSON
                         max_request_body_size=max(limit * 4, limit + 16 * 1024 * 1024), expose_tracebacks=False)


def serve(app, host: str = "127.0.0.1", port: int = 8080, threads: int | None = None, announce=None) -> None:
    """Serve until SIGTERM/SIGINT. Raises ``ConfigError`` for a non-loopback ``host`` without an API token.

    When runs outlast the shutdown grace period they are handed back to the queue and the process exits
    with status 0 at once (``os._exit``): finalizing the interpreter while worker threads are still inside
    node code (torch, C extensions) can abort it ("terminate called without an active exception")."""
    sys.setswitchinterval(float(os.environ.get("PIXELMILL_SWITCH_INTERVAL", "0.001")))
    svc = app.extensions["pixelmill"]
    check_exposure(host, svc.config.api_token)
    server = make_server(app, host, port, threads)
    url = f"http://{host}:{server.effective_port}"
    print(f"pixelmill: serving {len(svc.workflows.all())} workflow(s) on {url} "
          f"(API {url}/api/v1, webhooks {url}/webhook/<path>)", flush=True)
    if announce is not None:
        announce(url)

    stopping, loop_done = threading.Event(), threading.Event()

    def stop(signum, _frame):
        # First signal: waiting when_done calls answer 202 while the HTTP loop still runs to send them;
        # a moment later (or at a second signal) the loop stops.
        if loop_done.is_set():
            return  # already cleaning up: let it finish
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        log.info("signal %s: shutting down", signum)
        svc.release_waiters()
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()

    def hup(_signum, _frame):
        threading.Thread(target=svc.reload, name="pixelmill-reload", daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, hup)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        loop_done.set()
        svc.release_waiters()
        server.close()
        svc.close()
        if svc.handed_back:
            print(f"pixelmill: stopped; {len(svc.handed_back)} unfinished run(s) handed back to the queue: "
                  + ", ".join(svc.handed_back), file=sys.stderr, flush=True)
        else:
            print("pixelmill: stopped", file=sys.stderr, flush=True)
    if svc.handed_back and threading.current_thread() is threading.main_thread():
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
