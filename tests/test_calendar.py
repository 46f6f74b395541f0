"""Issue 17: the content calendar. Dated entries (``on.at`` and a calendar file) fire once each at their
slot, on a clock the tests move (no real waiting for slots); restarts across a slot follow the misfire
policy; two instances on one SQLite database post each entry once; approval missing at the slot is
reported, not posted; regenerate after an edit replaces the draft."""

from __future__ import annotations

import threading

import pytest

from .calendarutil import Clock, Instance, posts, utc, workflow
from .conftest import dedent
from .serverutil import write

CAL = """\
entries:
  - when: 2030-01-02T09:00:00Z
    inputs: {subject: row one}
  - when: 2030-01-03T10:00
    id: second
    inputs: {subject: row two, seed: 2}
"""


@pytest.fixture
def folder(tmp_path):
    wf = tmp_path / "workflows"
    wf.mkdir()
    return wf


def start(tmp_path, folder, registry, clock, **kw) -> Instance:
    inst = Instance(tmp_path / "home", folder, registry, clock, **kw)
    assert not [p for p in inst.load["problems"] if p["level"] == "error"], inst.load["problems"]
    return inst


def test_one_off_dates_and_calendar_rows_fire_once_each_at_their_slot(tmp_path, folder, registry):
    write(folder, "plan.yaml", workflow("plan", calendar="    file: plan.calendar.yaml\n",
                                        at="    - {at: '2030-01-01T09:00', id: first, inputs: {subject: one-off}}\n"))
    write(folder, "plan.calendar.yaml", CAL)
    clock = Clock(utc(2030, 1, 1, 8, 59))
    inst = start(tmp_path, folder, registry, clock)
    try:
        ids = [e["id"] for e in inst.calendar.list()]
        assert ids == ["first", "20300102T090000Z", "second"]
        assert inst.calendar.tick()["posted"] == []  # a minute early: nothing
        clock.set(utc(2030, 1, 1, 9, 0, 1))
        assert inst.calendar.tick()["posted"] == ["plan/first"]
        assert inst.calendar.tick()["posted"] == []  # the same slot never fires twice
        inst.settle()
        assert inst.entry("plan", "first")["status"] == "posted"
        assert inst.entry("plan", "second")["status"] == "planned"
        for t in (utc(2030, 1, 2, 9, 0, 5), utc(2030, 1, 3, 10, 0, 0)):
            clock.set(t)
            assert len(inst.calendar.tick()["posted"]) == 1
            assert inst.calendar.tick()["posted"] == []
            inst.settle()
        assert posts(tmp_path / "home") == ["one-off #1", "row one #1", "row two #2"]
        entries = inst.calendar.list()
        assert [e["status"] for e in entries] == ["posted"] * 3
        runs = [inst.runtime.store.get_run(e["post_run_id"]) for e in entries]
        assert [r["trigger"]["calendar"]["phase"] for r in runs] == ["post"] * 3
        assert [r["inputs"]["subject"] for r in runs] == ["one-off", "row one", "row two"]
        assert inst.runtime.store.count_runs() == 3  # no approval: no drafts, one run per entry
    finally:
        inst.close()


def test_restart_across_a_slot_follows_the_misfire_policy(tmp_path, folder, registry):
    write(folder, "late.yaml", workflow("late", calendar="    misfire: post_late\n",
                                        at="    - {at: '2030-01-01T09:00:00Z', id: a}\n"))
    write(folder, "skips.yaml", workflow("skips", calendar="    misfire: skip\n",
                                         at="    - {at: '2030-01-01T09:00:00Z', id: a}\n"))
    clock = Clock(utc(2030, 1, 1, 8, 0))
    first = start(tmp_path, folder, registry, clock)
    assert first.calendar.tick() == {"drafted": [], "posted": [], "missed": []}
    first.close()  # the service is down across 09:00
    clock.set(utc(2030, 1, 1, 11, 0))
    second = start(tmp_path, folder, registry, clock)
    try:
        done = second.calendar.tick()
        assert done["posted"] == ["late/a"] and done["missed"] == ["skips/a"]
        second.settle()
        late, skipped = second.entry("late", "a"), second.entry("skips", "a")
        assert late["status"] == "posted" and "late" in late["note"]
        assert second.runtime.store.get_run(late["post_run_id"])["trigger"]["calendar"]["late"] is True
        assert skipped["status"] == "missed" and "misfire: skip" in skipped["note"]
        kinds = {(r["workflow"], r["kind"]) for r in second.calendar.log()}
        assert kinds == {("late", "posted_late"), ("skips", "missed")}
    finally:
        second.close()
    third = start(tmp_path, folder, registry, clock)  # and again: nothing fires twice
    try:
        assert third.calendar.tick() == {"drafted": [], "posted": [], "missed": []}
        assert posts(tmp_path / "home") == ["a red circle #1"]
    finally:
        third.close()


def test_two_instances_on_one_database_fire_each_entry_once(tmp_path, folder, registry):
    rows = "".join(f"    - {{at: '2030-01-01T09:{m:02d}:00Z', id: e{m}, inputs: {{seed: {m}}}}}\n" for m in range(8))
    write(folder, "many.yaml", workflow("many", calendar="    approval: true\n    lead: 1h\n", at=rows))
    write(folder, "auto.yaml", workflow("auto", at=rows))
    clock = Clock(utc(2030, 1, 1, 8, 30))
    a = start(tmp_path, folder, registry, clock)
    b = start(tmp_path, folder, registry, clock)  # its own engine and queue on the same SQLite file
    assert a.runtime.store.engine is not b.runtime.store.engine
    try:
        results = []

        def hammer(inst):
            for _ in range(5):
                results.append(inst.calendar.tick())

        def race():
            threads = [threading.Thread(target=hammer, args=(i,)) for i in (a, b, a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        race()  # 08:30: every 'many' entry is inside its 1 h lead: drafted once each
        drafted = [k for r in results for k in r["drafted"]]
        assert sorted(drafted) == sorted(f"many/e{m}" for m in range(8))
        a.settle()
        b.settle()
        for m in range(8):
            a.calendar.approve("many", f"e{m}")
        results.clear()
        clock.set(utc(2030, 1, 1, 9, 7, 10))
        race()
        posted = [k for r in results for k in r["posted"]]
        assert sorted(posted) == sorted([f"many/e{m}" for m in range(8)] + [f"auto/e{m}" for m in range(8)])
        a.settle()
        b.settle()
        assert {e["status"] for e in a.calendar.list()} == {"posted"}
        texts = posts(tmp_path / "home")
        assert len(texts) == 16 and len(set(texts)) == 8  # each entry's text, twice (two workflows), once each
    finally:
        a.close()
        b.close()


def test_approval_missing_at_the_slot_is_reported_not_posted(tmp_path, folder, registry):
    at = ("    - {at: '2030-01-01T12:00:00Z', id: ok, inputs: {subject: approved post}}\n"
          "    - {at: '2030-01-01T12:00:01Z', id: late, inputs: {subject: forgotten post}}\n")
    write(folder, "review.yaml", workflow("review", calendar="    approval: true\n    lead: 2h\n", at=at))
    clock = Clock(utc(2030, 1, 1, 9, 0))
    inst = start(tmp_path, folder, registry, clock)
    try:
        assert inst.calendar.tick()["drafted"] == []  # 3 h ahead: before the lead time
        clock.set(utc(2030, 1, 1, 10, 0, 5))
        assert sorted(inst.calendar.tick()["drafted"]) == ["review/late", "review/ok"]
        inst.settle()
        yes = inst.entry("review", "ok")
        draft = inst.runtime.store.get_run(yes["draft_run_id"])
        assert yes["status"] == "generated" and draft["status"] == "succeeded"
        assert {s["step_id"]: s["status"] for s in draft["steps"]}["post"] == "skipped"
        assert posts(tmp_path / "home") == []  # a draft posts nothing
        assert inst.calendar.approve("review", "ok")["status"] == "approved"
        clock.set(utc(2030, 1, 1, 12, 0, 2))
        done = inst.calendar.tick()
        assert done["posted"] == ["review/ok"] and done["missed"] == ["review/late"]
        inst.settle()
        yes, no = inst.entry("review", "ok"), inst.entry("review", "late")
        assert yes["status"] == "posted" and no["status"] == "missed" and no["post_run_id"] is None
        post = inst.runtime.store.get_run(yes["post_run_id"])
        assert post["retry_of"] == yes["draft_run_id"]  # the approved draft's outputs are what is posted
        drafted = {s["step_id"]: s for s in draft["steps"]}["prompt"]["outputs"]["text"]
        assert posts(tmp_path / "home") == [drafted] == ["approved post #1"]
        steps = {s["step_id"]: s for s in inst.runtime.store.get_run(post["id"])["steps"]}
        assert steps["post"]["attempts"] == 1 and steps["prompt"]["attempts"] == 0  # reused, not run again
        report = inst.calendar.log()
        assert report[0]["kind"] == "missed" and "not approved" in report[0]["message"]
        assert inst.calendar.tick() == {"drafted": [], "posted": [], "missed": []}
    finally:
        inst.close()


def test_regenerate_after_an_edit_replaces_the_draft(tmp_path, folder, registry):
    write(folder, "edit.yaml", workflow("edit", calendar="    approval: true\n    lead: 1h\n",
                                        at="    - {at: '2030-01-01T12:00:00Z', id: x, inputs: {subject: first idea}}\n"))
    clock = Clock(utc(2030, 1, 1, 11, 30))
    inst = start(tmp_path, folder, registry, clock)
    try:
        inst.calendar.tick()
        inst.settle()
        old = inst.entry("edit", "x")
        inst.calendar.approve("edit", "x")
        new = inst.calendar.regenerate("edit", "x", {"subject": "better idea"})
        assert new["status"] == "generated"  # approval is needed again
        assert new["draft_run_id"] != old["draft_run_id"] and new["inputs"]["subject"] == "better idea"
        inst.settle()
        assert inst.calendar.approve("edit", "x")["status"] == "approved"
        clock.set(utc(2030, 1, 1, 12, 0, 1))
        assert inst.calendar.tick()["posted"] == ["edit/x"]
        inst.settle()
        assert posts(tmp_path / "home") == ["better idea #1"]
        assert inst.runtime.store.get_run(inst.entry("edit", "x")["post_run_id"])["retry_of"] == new["draft_run_id"]
    finally:
        inst.close()


def test_actions_refuse_what_they_cannot_do(tmp_path, folder, registry):
    from pixelmill.calendar.service import CalendarError

    write(folder, "acts.yaml", workflow("acts", at="    - {at: '2030-01-01T12:00:00Z', id: x}\n"
                                                    "    - {at: '2030-01-02T12:00:00Z', id: y}\n"))
    clock = Clock(utc(2030, 1, 1, 11, 0))
    inst = start(tmp_path, folder, registry, clock)
    try:
        with pytest.raises(CalendarError) as exc:
            inst.calendar.move("acts", "x", "2030-01-02T12:00:00Z")
        assert exc.value.status == 409 and exc.value.code == "slot_taken"
        with pytest.raises(CalendarError) as exc:
            inst.calendar.add("acts", "2029-01-01T00:00Z")
        assert exc.value.status == 409 and "past" in exc.value.message
        with pytest.raises(CalendarError) as exc:
            inst.calendar.add("acts", "2030-02-01T00:00Z", inputs={"nope": 1})
        assert exc.value.code == "invalid_inputs" and "nope" in exc.value.message
        added = inst.calendar.add("acts", "2030-01-01T11:30", tz="UTC", inputs={"seed": 5}, entry_id="extra")
        assert added["status"] == "planned" and added["inputs"]["seed"] == 5
        moved = inst.calendar.move("acts", "y", "2030-01-01T11:45:00Z")
        assert moved["slot"] == "2030-01-01T11:45:00+00:00" and moved["source"] == "api"
        assert inst.calendar.skip("acts", "x")["status"] == "skipped"
        with pytest.raises(CalendarError) as exc:
            inst.calendar.approve("acts", "x")
        assert exc.value.status == 409
        clock.set(utc(2030, 1, 1, 12, 0, 5))
        assert sorted(inst.calendar.tick()["posted"]) == ["acts/extra", "acts/y"]  # the skipped one is not
        inst.settle()
        assert posts(tmp_path / "home") == ["a red circle #1", "a red circle #5"]
        inst.calendar.sync()  # a reload keeps the moved entry where a person put it
        assert inst.entry("acts", "y")["slot"] == "2030-01-01T11:45:00+00:00"
    finally:
        inst.close()


# -- validation at load ------------------------------------------------------------------------------


def problems_of(folder, registry):
    from pixelmill.loader import load_file
    from pixelmill.problems import WorkflowInvalid

    try:
        loaded = load_file(folder / "v.yaml", registry)
        return [], [str(w) for w in loaded.warnings]
    except WorkflowInvalid as exc:
        return [str(p) for p in exc.problems], [str(w) for w in exc.warnings]


def test_validation_problems_have_positions(folder, registry):
    write(folder, "v.yaml", workflow("v", calendar="    file: v.calendar.yaml\n    timezone: Europe/Paris\n", at=(
        "    - at: 2030-13-01T09:00\n"
        "    - at: '2030-01-01T09:00'\n"
        "      inputs: {subjekt: x}\n"
        "    - at: '2020-01-01T09:00'\n"
        "      target: nowhere\n")))
    write(folder, "v.calendar.yaml", dedent("""
        entries:
          - when: 2030-01-01T09:00
            inputs: {seed: many}
          - when: 2030-01-05T09:00
          - when: 2030-01-05T08:00:00Z
    """))
    errors, warnings = problems_of(folder, registry)
    assert len(errors) == 5, errors
    f, c = str(folder / "v.yaml"), str(folder / "v.calendar.yaml")
    assert f"{f}:10:11: calendar entry: '2030-13-01T09:00' is not a date and time like '2026-12-01T09:00' " \
           "(optionally with an offset such as '+01:00')" in errors
    assert any(e.startswith(f"{f}:12:16: calendar entry: unknown input 'subjekt'") for e in errors)
    assert any(e.startswith(f"{f}:14:15: calendar entry: target 'nowhere' is not a step") for e in errors)
    assert any(e.startswith(f"{c}:3:20: calendar entry: input 'seed' must be an integer") for e in errors)
    assert any(e.startswith(f"{c}:5:11: two calendar entries in one slot (2030-01-05T08:00:00+00:00; the other "
                            f"is at {c}:4)") for e in errors)
    assert any(e.startswith(f"{f}:13:11: warning: calendar entry 2020-01-01T08:00:00+00:00 is in the past")
               for e in warnings)


def test_csv_calendar_rows_with_line_numbers(folder, registry):
    write(folder, "v.yaml", workflow("v", calendar="    file: posts.csv\n"))
    (folder / "posts.csv").write_text("when,subject,seed,colour\n"
                                      "2030-01-01T09:00Z,ok,1,\n"
                                      "tomorrow,bad date,2,\n"
                                      "2030-01-03T09:00Z,x,two,red\n")
    errors, _ = problems_of(folder, registry)
    p = str(folder / "posts.csv")
    assert any(e.startswith(f"{p}:3:1: calendar entry: 'tomorrow' is not a date") for e in errors), errors
    assert any(e.startswith(f"{p}:4:21: calendar entry: input 'seed' must be an integer") for e in errors), errors
    assert any(e.startswith(f"{p}:1:19: calendar entry: unknown input 'colour'") for e in errors), errors
    (folder / "posts.csv").write_text("when,subject,seed\n2030-01-01T09:00Z,ok,1\n2030-01-02T09:00Z,two,2\n")
    from pixelmill.loader import load_file
    loaded = load_file(folder / "v.yaml", registry)
    assert [(e.inputs["subject"], e.inputs["seed"], e.where) for e in loaded.calendar.entries] == \
        [("ok", 1, f"{p}:2"), ("two", 2, f"{p}:3")]


def test_approval_needs_a_step_that_waits_for_the_post_phase(folder, registry):
    text = workflow("v", calendar="    approval: true\n").replace(
        "    if: ${{ trigger.calendar.phase == 'post' }}\n", "")
    write(folder, "v.yaml", text)
    errors, _ = problems_of(folder, registry)
    assert len(errors) == 1 and "approval needs the posting step(s) to wait for the 'post' phase" in errors[0]


def test_calendar_files_are_not_loaded_as_workflows(folder, registry):
    from pixelmill.loader import workflow_files

    write(folder, "w.yaml", workflow("w"))
    write(folder, "calendar.yaml", CAL)
    write(folder, "w.calendar.yaml", CAL)
    assert [p.name for p in workflow_files(folder)] == ["w.yaml"]


def test_a_reload_follows_the_file_for_planned_rows(tmp_path, folder, registry):
    write(folder, "f.yaml", workflow("f", calendar="    file: f.calendar.yaml\n"))
    write(folder, "f.calendar.yaml", "- {when: '2030-01-01T09:00:00Z', id: a}\n- {when: '2030-01-01T10:00:00Z', id: b}\n"
                                     "- {when: '2030-01-01T11:00:00Z', id: c}\n")
    clock = Clock(utc(2030, 1, 1, 8, 0))
    inst = start(tmp_path, folder, registry, clock)
    try:
        inst.calendar.move("f", "c", "2030-01-01T11:30:00Z")  # a person's change wins over the file
        write(folder, "f.calendar.yaml", "- {when: '2030-01-01T09:15:00Z', id: a, inputs: {seed: 9}}\n"
                                         "- {when: '2030-01-01T12:00:00Z', id: c}\n")
        inst.workflows.load()  # any reload: the next tick re-reads the entries
        inst.calendar.tick()
        a, b, c = (inst.entry("f", k) for k in "abc")
        assert (a["slot"], a["inputs"]["seed"]) == ("2030-01-01T09:15:00+00:00", 9)
        assert b["status"] == "skipped" and b["note"] == "removed from the calendar file"
        assert c["slot"] == "2030-01-01T11:30:00+00:00"
    finally:
        inst.close()


def test_the_json_schema_accepts_both_calendar_spellings(folder, registry):
    import json
    from pathlib import Path

    import jsonschema

    from pixelmill.loader import load_file
    from pixelmill.yamlsource import load

    schema = json.loads((Path(__file__).resolve().parents[1] / "workflows" / "pixelmill.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    write(folder, "calendar.yaml", CAL)
    for i, on in enumerate(["  calendar: calendar.yaml\n", "  calendar: {file: calendar.yaml, approval: false}\n"]):
        text = workflow(f"s{i}").replace("steps:\n", "on:\n" + on + "steps:\n", 1)
        assert not list(validator.iter_errors(load(text, "x.yaml").data))
        path = write(folder, f"s{i}.yaml", text)
        assert len(load_file(path, registry).calendar.entries) == 2
    bad = workflow("b").replace("steps:\n", "on:\n  calendar: {file: c.yaml, lead: 2h, colour: red}\nsteps:\n", 1)
    assert list(validator.iter_errors(load(bad, "x.yaml").data))


def test_a_failed_post_retried_later_marks_the_entry_posted(tmp_path, folder, registry):
    from pixelmill.rerun import create_retry

    from .servernodes import FlakyNode

    registry.register(FlakyNode)
    ok = tmp_path / "ok"
    write(folder, "fl.yaml", f"""
name: fl
on:
  at: {{at: '2030-01-01T09:00:00Z', id: a}}
steps:
  - {{id: gate, node: test_flaky, with: {{ok_file: "{ok}", text: hello}}}}
  - id: post
    node: post_social
    config: {{target: outbox}}
    with: {{text: "${{{{ steps.gate.outputs.text }}}}"}}
""")
    clock = Clock(utc(2030, 1, 1, 9, 0, 1))
    inst = start(tmp_path, folder, registry, clock)
    try:
        assert inst.calendar.tick()["posted"] == ["fl/a"]
        inst.settle()
        failed = inst.entry("fl", "a")
        assert failed["status"] == "failed" and "does not exist yet" in failed["note"]
        ok.write_text("")
        store = inst.runtime.store
        retry = create_retry(store, store.get_run(failed["post_run_id"]), inst.workflows.get("fl"))
        inst.queue.enqueue(retry)
        inst.settle()
        entry = inst.entry("fl", "a")
        assert entry["status"] == "posted" and retry in entry["note"]
        assert posts(tmp_path / "home") == ["hello!"]
    finally:
        inst.close()
