"""Every validation case reports the exact file:line:col and message, all problems at once."""

from __future__ import annotations

import pytest

from pixelmill.loader import load_many, load_text
from pixelmill.problems import WorkflowInvalid

from .conftest import dedent

HEAD = """
name: wf
steps:
"""

CASES = [
    ("yaml_syntax", """
        name: wf
        steps:
          - id: a
            node: prompt
           with: {}
        """, ["wf.yaml:5:4: YAML syntax error: expected <block end>, but found '<block mapping start>' "
              "(check indentation and quoting)"]),
    ("duplicate_yaml_key", """
        name: wf
        name: wf2
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:2:1: duplicate key 'name' (each key may appear once per mapping)"]),
    ("unknown_top_key", """
        name: wf
        descripton: typo
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:2:1: workflow: unknown key 'descripton' (did you mean 'description'?)"]),
    ("unknown_nested_key", """
        name: wf
        on:
          webhook:
            path: hook
            respnd: when_done
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:5:5: workflow: unknown key 'respnd' in 'on.webhook' (did you mean 'respond'?)"]),
    ("unknown_step_key", """
        name: wf
        steps:
          - id: a
            node: t_echo
            retries: 3
        """, ["wf.yaml:5:5: step 'a': unknown key 'retries' (did you mean 'retry'?)"]),
    ("unknown_node", """
        name: wf
        steps:
          - id: a
            node: promt
        """, ["wf.yaml:4:11: step 'a': unknown node 'promt' (did you mean 'prompt'?)"]),
    ("node_version_mismatch", """
        name: wf
        steps:
          - id: a
            node: prompt@9
        """, ["wf.yaml:4:11: step 'a': node 'prompt' is version 1, the step asks for 9 "
              "(use 'prompt@1' or install the version you need)"]),
    ("unknown_config_field", """
        name: wf
        steps:
          - id: a
            node: t_flaky
            config: {fail_time: 2}
        """, ["wf.yaml:5:14: step 'a' (t_flaky) config: unknown key 'fail_time' (did you mean 'fail_times'?)"]),
    ("mistyped_config_field", """
        name: wf
        steps:
          - id: a
            node: t_flaky
            config:
              fail_times: lots
        """, ["wf.yaml:6:19: step 'a' (t_flaky) config: 'fail_times' must be a valid integer, unable to parse "
              "string as an integer (got 'lots')"]),
    ("missing_required_input", """
        name: wf
        steps:
          - id: a
            node: prompt
            with: {seed: 3}
        """, ["wf.yaml:3:5: step 'a' (prompt): missing required input 'template'"]),
    ("unknown_input", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {valu: 3}
        """, ["wf.yaml:5:12: step 'a' (t_echo) input: unknown key 'valu' (did you mean 'value'?)"]),
    ("duplicate_step_id", """
        name: wf
        steps:
          - id: a
            node: t_echo
          - id: a
            node: t_echo
        """, ["wf.yaml:5:9: duplicate step id 'a' (first defined on line 3) (each step needs its own id)"]),
    ("unknown_step_reference", """
        name: wf
        steps:
          - id: a
            node: t_echo
          - id: b
            node: t_echo
            with: {value: "${{ steps.aa.outputs.value }}"}
        """, ["wf.yaml:7:19: reference to unknown step 'aa' (did you mean 'a'?)"]),
    ("later_step_reference", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ steps.b.outputs.value }}"}
          - id: b
            node: t_echo
        """, ["wf.yaml:5:19: step 'a' refers to step 'b', which comes later (move 'b' above 'a')"]),
    ("unknown_output", """
        name: wf
        steps:
          - id: a
            node: t_echo
          - id: b
            node: t_echo
            with: {value: "${{ steps.a.outputs.valeu }}"}
        """, ["wf.yaml:7:19: unknown output 'valeu' of step 'a' (node t_echo) (did you mean 'value'?)"]),
    ("cycle", """
        name: wf
        steps:
          - id: a
            node: t_echo
            needs: [b]
          - id: b
            node: t_echo
            with: {value: "${{ steps.a.outputs.value }}"}
        """, ["wf.yaml:3:9: dependency cycle: a -> b -> a (remove one 'needs' or reference)"]),
    ("self_reference", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ steps.a.outputs.value }}"}
        """, ["wf.yaml:5:19: step 'a' refers to itself (a dependency cycle)"]),
    ("bad_cron", """
        name: wf
        on:
          schedule:
            - cron: "61 * * * *"
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:4:13: bad cron '61 * * * *': Error validating expression '61': the last value (61) is "
              "higher than the maximum value (59) (cron is 'minute hour day month weekday', e.g. '0 9 * * 1-5'; "
              "timezones are IANA names like 'Europe/Paris')"]),
    ("cron_field_count", """
        name: wf
        on:
          schedule: {cron: "* * *"}
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:3:20: cron '* * *' has 3 fields; use 5 (minute hour day month weekday) or 6 with seconds "
              "first (cron is 'minute hour day month weekday', e.g. '0 9 * * 1-5'; timezones are IANA names like "
              "'Europe/Paris')"]),
    ("bad_timezone", """
        name: wf
        on:
          schedule:
            - cron: "0 9 * * *"
              timezone: Mars/Olympus
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:5:17: unknown timezone 'Mars/Olympus' (cron is 'minute hour day month weekday', e.g. "
              "'0 9 * * 1-5'; timezones are IANA names like 'Europe/Paris')"]),
    ("malformed_expression", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ inputs.x + }}"}
        """, ["wf.yaml:5:19: malformed expression 'inputs.x +': unexpected 'end of print statement' "
              "(expressions look like ${{ steps.<id>.outputs.<name> }})"]),
    ("unclosed_expression", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ inputs.x "}
        """, ["wf.yaml:5:19: expression opened with '${{' is never closed with '}}' "
              "(expressions look like ${{ steps.<id>.outputs.<name> }})"]),
    ("blocked_attribute", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ trigger.__class__.__mro__ }}"}
        """, ["wf.yaml:5:19: expression reaches blocked attribute '__class__' (names starting with '_' and "
              "interpreter internals are not available in expressions)",
              "wf.yaml:5:19: expression reaches blocked attribute '__mro__' (names starting with '_' and "
              "interpreter internals are not available in expressions)"]),
    ("unknown_workflow_input", """
        name: wf
        inputs: {subject: {default: x}}
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ inputs.subjct }}"}
        """, ["wf.yaml:6:19: unknown workflow input 'subjct' (did you mean 'subject'?)"]),
    ("unknown_context_name", """
        name: wf
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ stpes.x }}"}
        """, ["wf.yaml:5:19: unknown name 'stpes' in expression (did you mean 'steps'?)"]),
    ("expression_in_config", """
        name: wf
        steps:
          - id: a
            node: t_flaky
            config: {fail_times: "${{ inputs.n }}"}
        """, ["wf.yaml:5:26: step 'a' (t_flaky) config: 'fail_times' must be a valid integer, unable to parse "
              "string as an integer (got '${{ inputs.n }}')",
              "wf.yaml:5:26: step 'a': config values are literal; expressions belong under 'with' "
              "(move this field to the step's 'with' inputs if the node accepts it)"]),
    ("yaml_boolean_id", """
        name: wf
        steps:
          - {id: no, node: t_echo}
        """, ["wf.yaml:3:10: workflow: 'steps[0].id' must be a valid string (got False); YAML reads "
              "yes/no/on/off/true/false as booleans: quote the value"]),
    ("hmac_without_secret", """
        name: wf
        on:
          webhook: {path: x, auth: {type: hmac, header: X-Sig}}
        steps: [{id: a, node: t_echo}]
        """, ["wf.yaml:3:28: webhook auth 'hmac' needs 'secret' (the environment variable holding the key)"]),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_position(registry, name, text, expected):
    with pytest.raises(WorkflowInvalid) as info:
        load_text(dedent(text), "wf.yaml", registry)
    assert [str(p) for p in info.value.problems] == expected


def test_every_problem_reported_at_once(registry):
    text = dedent("""
        name: wf
        descripton: x
        steps:
          - id: a
            node: promt
          - id: b
            node: t_echo
            with: {value: "${{ steps.zz.outputs.value }}"}
          - id: b
            node: t_flaky
            config: {fail_times: -1}
        """)
    with pytest.raises(WorkflowInvalid) as info:
        load_text(text, "wf.yaml", registry)
    lines = [p.line for p in info.value.problems]
    assert lines == [2, 5, 8, 9, 11]
    assert "fail_times' must be greater than or equal to 0" in str(info.value.problems[-1])


def test_valid_workflow_derives_dependencies(registry):
    text = dedent("""
        name: wf
        inputs: {n: {type: integer, default: 1}}
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ inputs.n }}"}
          - id: b
            node: t_echo
            with: {value: "${{ steps.a.outputs.value }}"}
          - id: c
            node: t_echo
            needs: [a]
          - id: d
            node: t_echo
            if: steps.b.status == 'succeeded'
            with: {value: "x ${{ steps.c.outputs.value }}"}
        outputs: {v: "${{ steps.d.outputs.value }}"}
        """)
    wf = load_text(text, "wf.yaml", registry)
    assert wf.deps == {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
    assert wf.order == ["a", "b", "c", "d"]


def test_folder_duplicates(tmp_path, registry):
    one = tmp_path / "one.yaml"
    two = tmp_path / "two.yaml"
    one.write_text("name: same\non: {webhook: {path: hook}}\nsteps: [{id: a, node: t_echo}]\n")
    two.write_text("name: same\non: {webhook: {path: /hook}}\nsteps: [{id: a, node: t_echo}]\n")
    loaded, problems = load_many([one, two], registry)
    assert [str(p) for p in problems] == [
        f"{two}:1:7: duplicate workflow name 'same' (also in {one}) (workflow names must be unique in a folder)",
        f"{two}:2:22: duplicate webhook path 'hook' (also in {one}) (each workflow needs its own webhook path)",
    ]
    assert [w.file for w in loaded] == [str(one)]


def test_on_key_is_not_yaml_boolean(registry):
    wf = load_text("name: wf\non:\n  schedule: {interval: 15m}\nsteps: [{id: a, node: t_echo}]\n", "w.yaml", registry)
    assert wf.workflow.on.schedule[0].interval == "15m"
