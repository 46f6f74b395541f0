"""Crash and restart behaviour of the real server: kill -9 with queued runs, schedules firing, missed slots
following the misfire policy across a restart, one run per slot with two servers on one database."""

from __future__ import annotations

import time
from datetime import datetime

import requests

from .serverutil import Server, write


def _finished_counts(srv: Server) -> dict[str, int]:
    with srv.db() as db:
        rows = db.execute("SELECT run_id, COUNT(*) FROM events WHERE kind = 'run.finished' GROUP BY run_id").fetchall()
    return dict(rows)


def test_kill9_with_queued_runs_then_each_finishes_exactly_once(tmp_path):
    wf = tmp_path / "wf"
    mark = tmp_path / "done.log"
    write(wf, "q.yaml", f"""
name: q
on: {{webhook: {{path: q, respond: immediately}}}}
steps:
  - {{id: nap, node: test_sleep, with: {{seconds: 0.6, steps: 3, mark: "{mark}"}}}}
""")
    env = {"PIXELMILL_WORKERS": "1", "PIXELMILL_SCHEDULER": "0"}
    srv = Server(tmp_path / "home", wf, env).start()
    n = 6
    try:
        ids = []
        for _ in range(n):
            r = requests.post(srv.url + "/webhook/q", json={}, timeout=10)
            assert r.status_code == 202
            ids.append(r.json()["run_id"])
        srv.wait_run(ids[0], done=("running",))
        time.sleep(0.2)
    finally:
        srv.kill9()  # mid-run: one running, the rest queued
    with srv.db() as db:
        statuses = dict(db.execute("SELECT id, status FROM runs").fetchall())
    assert set(statuses) == set(ids)
    assert statuses[ids[0]] == "running" and sum(s == "queued" for s in statuses.values()) >= n - 2
    srv2 = Server(tmp_path / "home", wf, env).start()
    try:
        for rid in ids:
            assert srv2.wait_run(rid, timeout=30)["status"] == "succeeded"
        time.sleep(0.5)
        assert _finished_counts(srv2) == {rid: 1 for rid in ids}
        done = mark.read_text().split()
        assert sorted(set(done)) == sorted(ids)  # every run completed its step
        assert any("re-queued 1 run" in line for line in srv2.log)
    finally:
        srv2.stop()


def test_interval_schedule_fires_about_every_second(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "tick.yaml", """
name: tick
on: {schedule: [{interval: 1s, misfire: run_once}]}
steps: [{id: p, node: prompt, with: {template: tick}}]
""")
    srv = Server(tmp_path / "home", wf).start()
    try:
        time.sleep(3.6)
        runs = srv.get("/api/v1/runs", params={"workflow": "tick"}).json()["items"]
        assert 2 <= len(runs) <= 5, runs
        assert all(r["trigger_kind"] == "schedule" for r in runs)
        for r in runs:
            assert srv.wait_run(r["id"])["status"] == "succeeded"
        slots = sorted(srv.get(f"/api/v1/runs/{r['id']}").json()["trigger"]["scheduled_for"] for r in runs)
        gaps = [(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
        assert all(abs(g - 1.0) < 1e-3 for g in gaps), gaps  # slots on a 1 s grid, none twice
        wfs = srv.get("/api/v1/workflows").json()["items"]
        assert wfs[0]["schedules"][0]["next_run"]
    finally:
        srv.stop()


def _schedule_rows(srv: Server):
    with srv.db() as db:
        return db.execute("SELECT fire_time, run_id, catch_up FROM schedule_fires ORDER BY fire_time").fetchall()


def _restart_with_gap(tmp_path, misfire: str):
    wf = tmp_path / "wf"
    write(wf, "slot.yaml", f"""
name: slot
on: {{schedule: [{{interval: 2s, misfire: {misfire}}}]}}
steps: [{{id: p, node: prompt, with: {{template: slot}}}}]
""")
    home = tmp_path / "home"
    srv = Server(home, wf).start()
    try:
        time.sleep(2.5)  # at least one slot fires
    finally:
        srv.kill9()
    before = _schedule_rows(srv)
    assert len(before) >= 1
    time.sleep(4.5)  # two or more slots pass while the service is down
    srv2 = Server(home, wf).start()
    try:
        time.sleep(0.8)
    finally:
        srv2.stop()
    # read the ledger and the runs once the service has stopped: a slot firing between two reads of a live
    # service would show a ledger row and a run that the first read did not see
    after = _schedule_rows(srv2)
    with srv2.db() as db:
        runs = [{"id": r[0], "trigger_kind": r[1]} for r in
                db.execute("SELECT id, trigger_kind FROM runs WHERE workflow = 'slot'").fetchall()]
    return before, after, runs


def test_restart_missed_slots_run_once(tmp_path):
    before, after, runs = _restart_with_gap(tmp_path, "run_once")
    caught = [r for r in after if r[2]]
    assert len(caught) == 1, after  # one run for all the missed slots
    assert caught[0][0] > before[-1][0]
    assert len({r[0] for r in after}) == len(after)  # one ledger row per slot
    assert len(runs) == len(after)  # one run per ledger row, nothing else
    assert all(r["trigger_kind"] == "schedule" for r in runs)


def test_restart_missed_slots_skip(tmp_path):
    before, after, runs = _restart_with_gap(tmp_path, "skip")
    assert not [r for r in after if r[2]]
    new = [r for r in after if r[0] > before[-1][0]]
    # nothing for the slots that passed while down: at most the one slot after the restart (0.8 s later)
    assert len(new) <= 1, (before, after)
    assert len(runs) == len(after)


def test_two_servers_on_one_database_run_each_slot_once(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "both.yaml", """
name: both
on: {schedule: [{interval: 1s}]}
steps: [{id: p, node: prompt, with: {template: both}}]
""")
    home = tmp_path / "home"
    a = Server(home, wf).start()
    b = Server(home, wf).start()
    try:
        time.sleep(3.5)
    finally:
        a.stop()
        b.stop()
    rows = _schedule_rows(a)
    with a.db() as db:
        runs = db.execute("SELECT COUNT(*) FROM runs WHERE workflow = 'both'").fetchone()[0]
        per_slot = db.execute("SELECT json_extract(trigger, '$.scheduled_for'), COUNT(*) FROM runs "
                              "GROUP BY 1 HAVING COUNT(*) > 1").fetchall()
    assert len(rows) >= 2 and runs == len(rows) and per_slot == []
    assert any("already has a run" in line for line in a.log + b.log)


def test_cancel_queued_run_and_reload_on_sighup(tmp_path):
    import json
    import signal

    wf = tmp_path / "wf"
    write(wf, "one.yaml", """
name: one
on: {webhook: {path: one, respond: immediately}}
steps: [{id: nap, node: test_sleep, with: {seconds: 1.0, steps: 4}}]
""")
    srv = Server(tmp_path / "home", wf, {"PIXELMILL_WORKERS": "1", "PIXELMILL_SCHEDULER": "0"}).start()
    try:
        first = requests.post(srv.url + "/webhook/one", json={}, timeout=10).json()["run_id"]
        second = requests.post(srv.url + "/webhook/one", json={}, timeout=10).json()["run_id"]
        srv.wait_run(first, done=("running",))
        r = srv.post(f"/api/v1/runs/{second}/cancel")
        assert r.json() == {"run_id": second, "status": "cancelled"}
        events = srv.get(f"/api/v1/runs/{second}/events", timeout=10).text  # ends: the run is over
        last = [ln for ln in events.splitlines() if ln.startswith("data:")][-1]
        assert json.loads(last[5:])["data"]["status"] == "cancelled"
        assert srv.wait_run(first)["status"] == "succeeded"
        time.sleep(0.3)
        run2 = srv.get(f"/api/v1/runs/{second}").json()
        assert run2["status"] == "cancelled" and run2["steps"] == []  # never started
        # SIGHUP reloads the folder
        write(wf, "two.yaml", """
name: two
on: {webhook: {path: two, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: two}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = requests.post(srv.url + "/webhook/two", json={}, timeout=10)
            if r.status_code != 404:
                break
            time.sleep(0.1)
        assert r.status_code == 200 and r.json()["outputs"] == {"text": "two"}
    finally:
        srv.stop()


def test_sigterm_hands_long_runs_back_exits_0_and_the_next_start_runs_them(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "long.yaml", """
name: long
on: {webhook: {path: long, respond: immediately}}
steps: [{id: nap, node: test_sleep, with: {seconds: 2.0, steps: 4}}]
""")
    env = {"PIXELMILL_SHUTDOWN_GRACE": "0.2", "PIXELMILL_SCHEDULER": "0"}
    srv = Server(tmp_path / "home", wf, env).start()
    run_id = requests.post(srv.url + "/webhook/long", json={}, timeout=10).json()["run_id"]
    srv.wait_run(run_id, done=("running",))
    srv.stop()  # SIGTERM: the run outlasts the grace period and is not cancelled
    assert srv.proc.returncode == 0, "".join(srv.log[-30:])
    with srv.db() as db:
        assert db.execute("SELECT status, owner FROM runs WHERE id = ?", (run_id,)).fetchone() == ("queued", None)
    said = "".join(srv.log)
    assert "outlasted the 0.2 s grace period" in said and run_id in said and "handed back" in said
    srv2 = Server(tmp_path / "home", wf, env).start()
    try:
        assert srv2.wait_run(run_id)["status"] == "succeeded"
        assert not any("interrupted by a crash" in line for line in srv2.log)
        assert any("picking up 1 queued run" in line for line in srv2.log)
    finally:
        srv2.stop()


def test_reload_resyncs_schedules(tmp_path):
    wf = tmp_path / "wf"
    path = write(wf, "tick.yaml", """
name: tick
on: {schedule: [{interval: 1s}]}
steps: [{id: p, node: prompt, with: {template: tick}}]
""")
    srv = Server(tmp_path / "home", wf).start()
    try:
        time.sleep(1.5)
        path.write_text("""
name: tick
steps: [{id: p, node: prompt, with: {template: tick}}]
""")
        r = srv.post("/api/v1/reload").json()
        assert r["changed"] == ["tick"] and len(r["schedules"]["removed"]) == 1
        time.sleep(0.3)
        n = srv.get("/api/v1/runs", params={"workflow": "tick"}).json()["total"]
        assert n >= 1
        time.sleep(1.5)
        assert srv.get("/api/v1/runs", params={"workflow": "tick"}).json()["total"] == n  # the job is gone
    finally:
        srv.stop()


def test_pending_callback_is_delivered_after_a_restart(tmp_path):
    import json
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wf = tmp_path / "wf"
    write(wf, "cb.yaml", """
name: cb
on: {webhook: {path: cb, respond: immediately}}
steps: [{id: p, node: prompt, with: {template: called back}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
    env = {"PIXELMILL_CALLBACK_BACKOFF": "0.2", "PIXELMILL_CALLBACK_ATTEMPTS": "50", "PIXELMILL_SCHEDULER": "0"}
    srv = Server(tmp_path / "home", wf, env).start()
    callback = f"http://127.0.0.1:{port}/resume"
    try:
        run_id = requests.post(srv.url + "/webhook/cb", json={"callback_url": callback}, timeout=10).json()["run_id"]
        srv.wait_run(run_id)
        time.sleep(0.5)
        state = srv.get(f"/api/v1/runs/{run_id}").json()["callback"]
        assert state["state"] == "pending" and state["attempts"] >= 1 and "ConnectionError" in state["last_error"]
    finally:
        srv.kill9()
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    rx = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    srv2 = Server(tmp_path / "home", wf, env).start()
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) == 1 and got[0]["run_id"] == run_id and got[0]["outputs"] == {"text": "called back"}
        time.sleep(0.3)
        assert srv2.get(f"/api/v1/runs/{run_id}").json()["callback"]["state"] == "delivered"
        assert len(got) == 1
    finally:
        srv2.stop()
        rx.shutdown()


def test_kill9_mid_run_resumes_from_finished_steps(tmp_path):
    """A run re-queued after kill -9 keeps its finished steps: only the step that was mid-way runs again."""
    wf = tmp_path / "wf"
    log = tmp_path / "count.log"
    write(wf, "r.yaml", f"""
name: r
on: {{webhook: {{path: r, respond: immediately}}}}
steps:
  - {{id: first, node: test_count, cache: false, with: {{log: "{log}", text: one}}}}
  - {{id: nap, node: test_sleep, needs: [first], with: {{seconds: 3, steps: 30}}}}
  - {{id: last, node: test_count, cache: false, needs: [nap], with: {{log: "{log}", text: "${{{{ steps.first.outputs.text }}}}"}}}}
""")
    env = {"PIXELMILL_WORKERS": "1", "PIXELMILL_SCHEDULER": "0"}
    srv = Server(tmp_path / "home", wf, env).start()
    try:
        run_id = requests.post(srv.url + "/webhook/r", json={}, timeout=10).json()["run_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with srv.db() as db:
                row = db.execute("SELECT status FROM step_runs WHERE run_id = ? AND step_id = 'nap'",
                                 (run_id,)).fetchone()
            if row and row[0] == "running":
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        srv.kill9()
    assert log.read_text().split("\n")[:-1] == [f"{run_id} first"]
    srv2 = Server(tmp_path / "home", wf, env).start()
    try:
        run = srv2.wait_run(run_id, timeout=30)
        assert run["status"] == "succeeded"
        assert log.read_text().split("\n")[:-1] == [f"{run_id} first", f"{run_id} last"]  # first ran once
        with srv2.db() as db:
            rows = db.execute("SELECT step_id, status FROM step_runs WHERE run_id = ? ORDER BY step_id",
                              (run_id,)).fetchall()
        assert rows == [("first", "succeeded"), ("last", "succeeded"), ("nap", "succeeded")]  # one row each
        out = srv2.get(f"/api/v1/runs/{run_id}").json()
        assert {s["step_id"]: s["outputs"] for s in out["steps"]}["last"] == {"text": "ONE"}
    finally:
        srv2.stop()


def test_sigterm_answers_waiting_when_done_calls_and_stops_quickly(tmp_path):
    import threading

    wf = tmp_path / "wf"
    write(wf, "slow.yaml", """
name: slow
on: {webhook: {path: slow, respond: when_done, respond_timeout: 60}}
steps: [{id: nap, node: test_sleep, with: {seconds: 20, steps: 20}}]
""")
    srv = Server(tmp_path / "home", wf, {"PIXELMILL_SHUTDOWN_GRACE": "0.2", "PIXELMILL_SCHEDULER": "0"}).start()
    got = []
    caller = threading.Thread(target=lambda: got.append(requests.post(srv.url + "/webhook/slow", json={},
                                                                      timeout=60)))
    caller.start()
    with srv.db() as db:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not db.execute("SELECT 1 FROM runs WHERE status = 'running'").fetchone():
            time.sleep(0.05)
    t0 = time.monotonic()
    srv.stop()
    took = time.monotonic() - t0
    caller.join(10)
    assert srv.proc.returncode == 0 and took < 4, (took, "".join(srv.log[-20:]))
    assert got and got[0].status_code == 202 and got[0].json()["status"] in ("running", "queued")
    assert "Traceback" not in "".join(srv.log)
