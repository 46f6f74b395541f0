"""Issue 9, items 1-8 and 12: hostile or mistaken workflow files give positioned problems, never a crash."""

from __future__ import annotations

import tracemalloc

import pytest

from pixelmill.loader import load_file, load_many, load_text
from pixelmill.problems import WorkflowInvalid
from pixelmill.status import RunStatus, StepStatus

from .conftest import dedent

STEP = "steps: [{id: s, node: t_echo}]\n"


def problems_of(text: str, registry, file: str = "wf.yaml") -> list[str]:
    with pytest.raises(WorkflowInvalid) as info:
        load_text(text, file, registry)
    assert info.value.problems, "WorkflowInvalid without problems"
    return [str(p) for p in info.value.problems]


def alias_bomb(levels: int, width: int = 9) -> str:
    lines = ["name: bomb", STEP.rstrip(), "x:", "  a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# -- item 1: alias expansion is bounded ------------------------------------------------------------

def test_alias_bomb_is_refused_at_the_alias_with_bounded_memory(registry):
    text = alias_bomb(6)  # 9**6 = 531,441 values once expanded, from 300 bytes
    assert len(text) < 400
    tracemalloc.start()
    try:
        problems = problems_of(text, registry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60e6, f"validation peaked at {peak / 1e6:.0f} MB"
    bomb = [p for p in problems if "alias" in p]
    assert len(bomb) == 1, problems
    # the first alias whose expansion crosses the bound: '*a4' inside a5, line 9, column 12
    assert bomb[0].startswith("wf.yaml:9:12: alias '*a4' expands the document past 100000 values"), bomb


def test_aliases_within_the_bound_still_work(registry):
    wf = load_text(dedent("""
        name: wf
        steps:
          - id: a
            node: t_echo
            with: &v {value: 1}
          - id: b
            node: t_echo
            with: *v
        """), "wf.yaml", registry)
    assert wf.workflow.steps[1].with_ == {"value": 1}


# -- item 2: tracebacks become positioned problems ---------------------------------------------------

CRASHERS = [
    ("recursive_alias", "name: r\no: &o {s: *o}\n" + STEP,
     "wf.yaml:2:11: recursive alias '*o': it refers to a value that contains it"),
    ("deep_flow", "name: d\nx: " + "[" * 600 + "]" * 600 + "\n" + STEP,
     "wf.yaml:2:67: YAML syntax error: nesting deeper than 64 levels"),
    ("deep_parentheses", "name: p\nsteps:\n  - id: s\n    node: t_echo\n    with: {value: '${{ "
     + "(" * 70 + "1" + ")" * 70 + " }}'}\n", "wf.yaml:5:19: expression '((((("),
    ("long_operator_chain", "name: p\nsteps:\n  - id: s\n    node: t_echo\n    with: {value: '${{ "
     + "+".join(["1"] * 3000) + " }}'}\n", "wf.yaml:5:19: expression '1+1+1"),
    ("interval_huge", "name: i\non: {schedule: {interval: 100000000d}}\n" + STEP,
     "wf.yaml:2:27: interval 100000000d is longer than a year"),
    ("interval_nan", "name: i\non: {schedule: {interval: .nan}}\n" + STEP,
     "wf.yaml:2:27: workflow: 'on.schedule.interval' must be a finite number"),
    ("interval_4e38", "name: i\non: {schedule: {interval: 4.0e+38}}\n" + STEP,
     "wf.yaml:2:27: interval 4e+38 is longer than a year"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CRASHERS], ids=[c[0] for c in CRASHERS])
def test_crashers_are_positioned_problems(registry, text, expected):
    problems = problems_of(text, registry)
    assert any(p.startswith(expected) for p in problems), problems


def test_one_bad_file_never_stops_the_others(registry, tmp_path):
    """What `serve` start-up and /reload do: every bad file is a problem, the good one is served."""
    for name, text, _ in CRASHERS:
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: ", f"name: {name}-", 1))
    (tmp_path / "bad-utf8.yaml").write_bytes(b"name: u\ndescription: caf\xe9\n" + STEP.encode())
    (tmp_path / "good.yaml").write_text("name: good\n" + STEP)
    from pixelmill.server.workflows import WorkflowSet

    ws = WorkflowSet(tmp_path, registry)
    report = ws.load()
    assert [wf.name for wf in ws.all()] == ["good"]
    bad_files = {p["file"] for p in report["problems"]}
    assert bad_files == {str(p) for p in tmp_path.iterdir() if p.name != "good.yaml"}
    assert all(p["line"] >= 1 and p["col"] >= 1 for p in report["problems"])


# -- item 3: accepted but broken -------------------------------------------------------------------

def test_timeout_inf_is_rejected(registry):
    problems = problems_of("name: t\nsteps: [{id: s, node: t_echo, timeout: .inf}]\n", registry)
    assert problems == ["wf.yaml:2:40: step 's': 'timeout' must be a finite number (got inf)"]


def test_retry_delay_nan_is_rejected(registry):
    problems = problems_of("name: t\nsteps: [{id: s, node: t_echo, retry: {delay: .nan}}]\n", registry)
    assert problems == ["wf.yaml:2:46: step 's': 'retry.delay' must be a finite number (got nan)"]


def test_input_defaults_must_fit_type_and_enum(registry):
    problems = problems_of(dedent("""
        name: w
        inputs:
          n: {type: integer, default: many}
          flag: {type: boolean, default: 1}
          size: {type: string, enum: [small, large], default: huge}
          empty: {type: integer, default: null}
          ok: {type: number, default: 2, enum: [1, 2]}
        steps: [{id: s, node: t_echo}]
        """), registry)
    assert problems == [
        "wf.yaml:3:31: input 'n': default 'many' is not of type integer (quote strings; write numbers without quotes)",
        "wf.yaml:4:34: input 'flag': default 1 is not of type boolean (quote strings; write numbers without quotes)",
        "wf.yaml:5:55: input 'size': default 'huge' is not one of its enum values (allowed: 'small', 'large')",
    ]


@pytest.mark.parametrize("text,where", [
    ("name: t\nsteps: !!python/object/apply:os.system [{id: s, node: t_echo}]\n", "wf.yaml:2:8"),
    ("name: t\nsteps: [!!python/object:os.system {id: s, node: t_echo}]\n", "wf.yaml:2:9"),
    ("name: t\nsteps: [{id: s, node: t_echo, with: !!set {a, b}}]\n", "wf.yaml:2:37"),
])
def test_tags_on_collections_are_rejected(registry, text, where):
    problems = problems_of(text, registry)
    assert any(p.startswith(where) and "is not allowed here" in p for p in problems), problems


def test_webhook_routes_that_shadow_each_other_across_files(registry, tmp_path):
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("name: a\non: {webhook: {path: items/:id}}\n" + STEP)
    b.write_text("name: b\non: {webhook: {path: items/:name}}\n" + STEP)
    c.write_text("name: c\non: {webhook: {path: items/new}}\n" + STEP)  # a literal segment wins: no clash
    loaded, problems = load_many([a, b, c], registry)
    assert [wf.name for wf in loaded] == ["a", "c"]
    assert [str(p) for p in problems] == [
        f"{b}:2:22: webhook path 'items/:name' matches the same requests as 'items/:id' in {a} "
        "(make a literal segment differ, e.g. 'items/by-id/:id' and 'items/by-name/:name')"]


# -- item 4: positions -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('name: q\ndescription: "abc\n' + STEP + "x: 1\n",
     "wf.yaml:2:14: YAML syntax error: a quoted scalar opened here is never closed"),
    ("name: q\ndescription: 'abc\n" + STEP,
     "wf.yaml:2:14: YAML syntax error: a quoted scalar opened here is never closed"),
    ("name: q\nsteps: [{id: s, node: t_echo}\n", "wf.yaml:2:8: YAML syntax error: a flow sequence opened here"),
    ("name: q\nsteps: [{id: s, node: t_echo]\n", "wf.yaml:2:29: YAML syntax error: expected ',' or '}', but got ']' "
     "(in the mapping opened at line 2, column 9)"),
    ("name: q\ndescription: ab\x00c\n" + STEP, "wf.yaml:2:16: character U+0000 is not allowed in YAML"),
])
def test_syntax_errors_point_where_the_problem_opens(registry, text, expected):
    problems = problems_of(text, registry)
    assert any(p.startswith(expected) for p in problems), problems


def test_invalid_utf8_is_reported_where_it_is(registry, tmp_path):
    path = tmp_path / "w.yaml"
    path.write_bytes("name: w\n# señal\ndescription: caf\xe9 ok\n".encode().replace(b"\\xe9", b"") +
                     b"title: caf\xe9\n")
    with pytest.raises(WorkflowInvalid) as info:
        load_file(path, registry)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4:11: the file is not valid UTF-8 (byte 0xe9) (save the file as UTF-8)"]


def test_long_values_are_echoed_shortened(registry):
    problems = problems_of("name: q\nsteps: [{id: s, node: t_flaky, config: {fail_times: " + "a" * 200_000 + "}}]\n",
                           registry)
    assert len(problems) == 1 and len(problems[0]) < 300, problems[0][:300]
    assert problems[0].startswith("wf.yaml:2:53: step 's' (t_flaky) config: 'fail_times' must be a valid integer")
    assert "[...]" in problems[0]


# -- item 5: no phantom cycle ----------------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["    modle: x\n", "    timeout: -1\n", "    node: [x]\n"])
def test_an_earlier_broken_step_adds_no_cycle(registry, broken):
    text = ("name: q\nsteps:\n  - id: gen\n    node: t_echo\n" + broken +
            "  - id: cap\n    node: t_echo\n    with: {value: '${{ steps.gen.outputs.value }}'}\n")
    if "node: [x]" in broken:
        text = text.replace("    node: t_echo\n    node: [x]\n", "    node: [x]\n", 1)
    problems = problems_of(text, registry)
    assert problems and not any("cycle" in p for p in problems), problems


def test_a_real_cycle_is_still_reported_once(registry):
    problems = problems_of(dedent("""
        name: q
        steps:
          - {id: a, node: t_echo, needs: [c]}
          - {id: b, node: t_echo, needs: [a]}
          - {id: c, node: t_echo, needs: [b]}
          - {id: d, node: t_echo}
        """), registry)
    assert problems == ["wf.yaml:3:10: dependency cycle: a -> c -> b -> a (remove one 'needs' or reference)"]


# -- item 6: ordering is near-linear (figures: bench/loader.py) ------------------------------------------

def test_two_thousand_steps_order_like_the_list(registry):
    n = 2000
    lines = ["name: big", "steps:"]
    for i in range(n):
        value = "0" if i % 50 == 0 else f"'${{{{ steps.s{i - 1}.outputs.value }}}}'"
        lines.append(f"  - {{id: s{i}, node: t_echo, with: {{value: {value}}}}}")
    lines.append("  - {id: first, node: t_echo, needs: [s1999]}")
    wf = load_text("\n".join(lines) + "\n", "big.yaml", registry)
    assert wf.order == [f"s{i}" for i in range(n)] + ["first"]
    assert wf.deps["s51"] == {"s50"} and wf.deps["s50"] == set()


# -- item 7: a bare '{{ }}' is literal text: warn ---------------------------------------------------------

def test_bare_braces_warn_except_in_template_fields(registry):
    wf = load_text(dedent("""
        name: w
        inputs: {topic: {default: cats}}
        steps:
          - id: p
            node: prompt
            with: {template: "a {{ color }} cat", vars: {color: red}}
          - id: e
            node: t_echo
            with: {value: "{{ inputs.topic }}"}
        outputs: {text: "about {{inputs.topic}}"}
        """), "wf.yaml", registry)
    assert [str(w) for w in wf.warnings] == [
        "wf.yaml:9:19: warning: '{{ inputs.topic }}' looks like an expression but is literal text "
        "(did you mean '${{ inputs.topic }}'?)",
        "wf.yaml:10:17: warning: '{{inputs.topic}}' looks like an expression but is literal text "
        "(did you mean '${{ inputs.topic }}'?)",
    ]


# -- item 8: known at validate time ------------------------------------------------------------------------

def test_missing_secrets_are_warnings(registry):
    text = dedent("""
        name: w
        on: {webhook: {path: w, auth: {type: header, header: X-Token, secret: HOOK_TOKEN}}}
        steps:
          - id: s
            node: t_echo
            with: {value: "${{ secrets.API_KEY | upper }}"}
          - id: post
            node: post_social
            config: {target: mastodon, instance: "https://m.example", token_secret: MASTO_TOKEN}
            with: {text: hi}
        """)
    wf = load_text(text, "wf.yaml", registry, environ={"MASTO_TOKEN": "x" * 8})
    assert [str(w) for w in wf.warnings] == [
        "wf.yaml:2:71: warning: secret 'HOOK_TOKEN' is not set in the environment "
        "(export HOOK_TOKEN before 'pixelmill serve' or 'run'; runs that use it fail until then)",
        "wf.yaml:6:19: warning: secret 'API_KEY' is not set in the environment "
        "(export API_KEY before 'pixelmill serve' or 'run'; runs that use it fail until then)",
    ]
    wf = load_text(text, "wf.yaml", registry, environ={"HOOK_TOKEN": "t" * 8, "API_KEY": "k" * 8})
    assert [w.message for w in wf.warnings] == ["secret 'MASTO_TOKEN' is not set in the environment"]
    assert wf.warnings[0].line == 9


def test_prompt_template_variables_without_value(registry):
    wf = load_text(dedent("""
        name: w
        steps:
          - id: p
            node: prompt
            with:
              template: "a {{ colour }} shape on a {{ backgroud }} background, {{ weekday }}"
              vars: {background: white}
              choices: {color: [red, blue]}
        """), "wf.yaml", registry)
    assert [str(w) for w in wf.warnings] == [
        "wf.yaml:6:17: warning: step 'p': template variable 'backgroud' has no value (did you mean 'background'?)",
        "wf.yaml:6:17: warning: step 'p': template variable 'colour' has no value (did you mean 'color'?)",
    ]
    problems = problems_of("name: w\nsteps: [{id: p, node: prompt, with: {template: 'a {{ x'}}]\n", registry)
    assert problems[0].startswith("wf.yaml:2:48: step 'p': prompt template: unexpected end of template")


def test_c2pa_paths_are_relative_to_the_workflow_file(registry, tmp_path, monkeypatch):
    folder = tmp_path / "flows"
    (folder / "certs").mkdir(parents=True)
    (folder / "certs" / "chain.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)  # not the workflow's folder
    path = folder / "label.yaml"
    path.write_text(dedent("""
        name: label
        steps:
          - id: l
            node: label_ai
            config:
              c2pa: {cert_chain: certs/chain.pem, private_key: certs/missing.pem}
            with: {image: {run_id: r, name: n.png}}
        """))
    wf = load_file(path, registry)
    c2pa = wf.configs["l"].c2pa
    assert c2pa.cert_chain == str(folder / "certs" / "chain.pem")
    assert [str(w) for w in wf.warnings] == [
        f"{path}:6:56: warning: step 'l': C2PA private_key {str(folder / 'certs' / 'missing.pem')!r} does not exist "
        "(relative paths start at the workflow file's folder; make a test certificate with: "
        "pixelmill c2pa dev-cert DIR)"]


def test_warnings_reach_validate_and_the_workflow_list(registry, tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (tmp_path / "w.yaml").write_text("name: w\nsteps: [{id: s, node: t_echo, with: {value: '${{ secrets.NOT_SET_ANYWHERE }}'}}]\n")
    from pixelmill.server.workflows import WorkflowSet

    ws = WorkflowSet(tmp_path, registry)
    report = ws.load()
    assert [wf.name for wf in ws.all()] == ["w"]
    assert [(p["level"], p["message"]) for p in report["problems"]] == [
        ("warning", "secret 'NOT_SET_ANYWHERE' is not set in the environment")]
    assert [p.to_dict()["level"] for p in ws.catalog.problems] == ["warning"]  # GET /api/v1/workflows lists these


# -- item 12: steps.X.status drives a fallback -------------------------------------------------------------

def test_status_check_waits_for_a_failed_step_and_runs_the_fallback(runtime):
    wf = load_text(dedent("""
        name: fallback
        steps:
          - {id: a, node: t_flaky, config: {fail_times: 5, permanent: true}, on_error: continue}
          - {id: fallback, node: t_echo, if: "${{ steps.a.status == 'failed' }}", with: {value: plan-b}}
          - {id: main, node: t_echo, if: "steps.a.status == 'succeeded'", with: {value: plan-a}}
          - {id: uses_a, node: t_echo, with: {value: "${{ steps.a.outputs.attempt }}"}}
        outputs: {result: "${{ steps.fallback.outputs.value }}"}
        """), "wf.yaml", runtime.registry)
    assert wf.deps["fallback"] == {"a"} and wf.status_deps == {"fallback": {"a"}, "main": {"a"}}
    result = runtime.run(wf, {})
    assert result.steps["a"].status is StepStatus.FAILED
    assert result.steps["fallback"].status is StepStatus.SUCCEEDED
    assert result.steps["main"].status is StepStatus.SKIPPED  # its condition is false
    assert result.steps["uses_a"].status is StepStatus.SKIPPED  # it needs a's outputs: a must succeed
    assert result.status is RunStatus.SUCCEEDED and result.outputs == {"result": "plan-b"}


def test_validate_command_prints_warnings(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pixelmill.cli.workflows import validate_cmd

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "w.yaml"
    path.write_text("name: w\nsteps: [{id: p, node: prompt, with: {template: '{{ colr }}', choices: {color: [red]},"
                    " vars: {k: '${{ secrets.NOT_SET_ANYWHERE }}'}}}]\n")
    result = CliRunner().invoke(validate_cmd, [str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:2:97: warning: secret 'NOT_SET_ANYWHERE' is not set in the environment" in result.output
    assert f"{path}:2:48: warning: step 'p': template variable 'colr' has no value (did you mean 'color'?)" \
        in result.output
    assert f"ok: {path} (w, 1 steps, 2 warnings)" in result.output


def test_served_workflow_list_shows_warnings_and_a_bad_file_never_500s(registry, tmp_path, monkeypatch):
    from pixelmill.server.app import create_app
    from pixelmill.server.config import ServerConfig
    from pixelmill.settings import Settings

    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (tmp_path / "w.yaml").write_text("name: w\nsteps: [{id: s, node: t_echo, with: {value: '${{ secrets.NOT_SET_ANYWHERE }}'}}]\n")
    (tmp_path / "bomb.yaml").write_text(alias_bomb(8))
    app = create_app(ServerConfig.from_env({}, workflows_dir=tmp_path), registry=registry,
                     settings=Settings.from_env(home=tmp_path / "home"), start=False)
    try:
        app.extensions["pixelmill"].workflows.load()  # what `serve` does first when it starts
        client = app.test_client()
        body = client.get("/api/v1/workflows").get_json()
        assert [w["name"] for w in body["items"]] == ["w"]
        assert sorted((p["level"], p["file"].rsplit("/", 1)[-1]) for p in body["problems"]) == [
            ("error", "bomb.yaml"), ("warning", "w.yaml")]
        (tmp_path / "rec.yaml").write_text("name: r\no: &o {s: *o}\n" + STEP)
        reload = client.post("/api/v1/reload")
        assert reload.status_code == 200, reload.get_data(as_text=True)
    finally:
        app.extensions["pixelmill"].close()
