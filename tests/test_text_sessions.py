"""generate_text's HTTP sessions: reused between calls (one keep-alive connection), never used by two threads
at once (requests does not promise that a Session is thread-safe)."""

from __future__ import annotations

import threading
import time

import requests

from pixelmill.node import Services
from pixelmill.testing import make_context
from pixelmill.text.sessions import SessionPool
from pixelmill_nodes.generate_text import SESSIONS, GenerateTextNode

from .openai_fake import FakeOpenAI


def test_pool_lends_a_session_to_one_caller_at_a_time_and_keeps_it_for_the_next():
    pool = SessionPool(max_idle_per_url=2)
    a, b = pool.acquire("http://a/v1"), pool.acquire("http://a/v1")
    assert a is not b
    pool.release("http://a/v1", a)
    assert pool.acquire("http://b/v1") is not a  # another server gets another session
    assert pool.acquire("http://a/v1") is a
    c = pool.acquire("http://a/v1")
    for s in (a, b, c):
        pool.release("http://a/v1", s)
    assert pool.idle("http://a/v1") == 2  # the third is closed, not kept
    pool.close()
    assert pool.idle("http://a/v1") == 0
    pool.release("http://a/v1", requests.Session())  # given back after close: closed, not kept
    assert pool.idle("http://a/v1") == 0


def _recording(srv: FakeOpenAI):
    """Record each TCP connection the fake accepts; ``slow["s"]`` delays each answer."""
    connections: list = []
    slow = {"s": 0.0}
    base = srv._server.RequestHandlerClass

    class Recording(base):
        def setup(self):
            super().setup()
            connections.append(self.client_address)

        def do_POST(self):
            time.sleep(slow["s"])
            super().do_POST()

    srv._server.RequestHandlerClass = Recording
    return connections, slow


def test_calls_reuse_one_connection_and_concurrent_calls_never_share_a_session(tmp_path, monkeypatch):
    in_flight: dict[int, int] = {}
    shared: list = []
    lock = threading.Lock()
    send = requests.Session.send

    def watched_send(self, request, **kwargs):
        with lock:
            in_flight[id(self)] = in_flight.get(id(self), 0) + 1
            if in_flight[id(self)] > 1:
                shared.append(id(self))
        try:
            return send(self, request, **kwargs)
        finally:
            with lock:
                in_flight[id(self)] -= 1

    monkeypatch.setattr(requests.Session, "send", watched_send)
    services = Services()  # one per process, as the runtime makes it
    with FakeOpenAI() as srv:
        connections, slow = _recording(srv)
        node = GenerateTextNode(GenerateTextNode.Config(base_url=srv.base_url, model="tiny-chat"))

        def ask(i, j):
            inputs = GenerateTextNode.Inputs(prompt="call {{ i }}.{{ j }}", vars={"i": i, "j": j})
            return node.run(inputs, make_context(tmp_path, services=services)).text

        assert [ask(0, j) for j in range(5)] == [f"echo: call 0.{j}" for j in range(5)]
        assert len(connections) == 1  # one keep-alive connection for all five

        slow["s"] = 0.05  # the threads' calls overlap
        results: dict = {}
        start = threading.Barrier(4)

        def worker(i):
            start.wait()
            results[i] = [ask(i, j) for j in range(3)]

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert results == {i: [f"echo: call {i}.{j}" for j in range(3)] for i in range(1, 5)}
    assert not shared, "a session served two threads at once"
    assert len(connections) <= 1 + 4  # the first, and at most one more per concurrent caller, reused
    assert services.get(SESSIONS).idle(srv.base_url) == 4
