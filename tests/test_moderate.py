"""moderate node: policy matching, evasions, user policies, blocked runs through the executor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pixelmill.events import EventKind
from pixelmill.loader import load_text
from pixelmill.moderation import PolicyError, load_policy
from pixelmill.problems import WorkflowInvalid
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings
from pixelmill.status import RunStatus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _workflow(rt, config="{}", with_="{text: \"${{ inputs.prompt }}\", field: prompt}"):
    return load_text(f"""
name: moderated
inputs: {{prompt: {{type: string}}, nsfw: {{type: boolean, default: false}}}}
steps:
  - id: check
    node: moderate
    config: {config}
    with: {with_}
  - id: after
    node: prompt
    needs: [check]
    with: {{template: "ok"}}
outputs:
  allowed: "${{{{ steps.check.outputs.allowed }}}}"
  safety: "${{{{ steps.check.outputs.safety_checker }}}}"
  matches: "${{{{ steps.check.outputs.matches }}}}"
""", "moderated.yaml", rt.registry)


def test_moderate_blocks_run_end_to_end_with_rule_and_category(tmp_path):
    rt = Runtime.create(Settings.from_env(home=tmp_path))
    wf = _workflow(rt)
    ok = rt.run(wf, {"prompt": "a lighthouse in a storm, oil painting"})
    assert ok.status is RunStatus.SUCCEEDED
    assert ok.outputs["allowed"] is True and ok.outputs["safety"] == "not_available"

    result = rt.run(wf, {"prompt": "a n.a.k.e.d woman on a beach"})
    assert result.status is RunStatus.BLOCKED
    assert result.error["rule"] == "explicit_terms" and result.error["category"] == "sexual"
    assert "prompt matched policy rule 'explicit_terms'" in result.error["message"]
    run = rt.store.list_runs(limit=1)[0]
    assert run["status"] == "blocked"
    stored = rt.store.get_run(run["id"])
    assert stored["error"]["rule"] == "explicit_terms" and stored["error"]["category"] == "sexual"
    events = rt.store.events(run["id"])
    failed = [e for e in events if e.kind is EventKind.STEP_FAILED]
    assert failed and failed[0].step_id == "check" and failed[0].data["status"] == "blocked"
    assert failed[0].data["error"]["category"] == "sexual"
    assert failed[0].data["attempts"] == 1  # never retried
    # the step after it never ran
    assert not [e for e in events if e.step_id == "after" and e.kind is EventKind.STEP_FINISHED]


def test_safety_checker_verdict_is_surfaced_and_blocks(tmp_path):
    rt = Runtime.create(Settings.from_env(home=tmp_path))
    wf = _workflow(rt, with_="{text: \"${{ inputs.prompt }}\", nsfw_detected: \"${{ inputs.nsfw }}\"}")
    clear = rt.run(wf, {"prompt": "a bowl of fruit", "nsfw": False})
    assert clear.status is RunStatus.SUCCEEDED and clear.outputs["safety"] == "clear"
    flagged = rt.run(wf, {"prompt": "a bowl of fruit", "nsfw": True})
    assert flagged.status is RunStatus.BLOCKED
    assert flagged.error["rule"] == "safety_checker"
    report = _workflow(rt, config="{action: report}",
                       with_="{text: [\"a bowl of fruit\", \"p0rn\"], nsfw_detected: [false, true]}")
    r = rt.run(report, {"prompt": "unused"})
    assert r.status is RunStatus.SUCCEEDED
    assert r.outputs["allowed"] is False and r.outputs["safety"] == "flagged"
    assert r.outputs["matches"][0]["text_index"] == 1 and r.outputs["matches"][0]["category"] == "sexual"


@pytest.mark.parametrize("text,category", [
    ("NAKED woman", "sexual"),
    ("n a k e d woman", "sexual"),
    ("n-a-k-e-d", "sexual"),
    ("n_a_k_e_d", "sexual"),
    ("nakeeed", "sexual"),
    ("n@k3d", "sexual"),
    ("nаkеd", "sexual"),  # Cyrillic а and е
    ("ｎａｋｅｄ", "sexual"),  # fullwidth
    ("ná\u200bked", "sexual"),  # accent + zero-width space
    ("na ked lady", "sexual"),
    ("n*ked", "sexual"),
    ("n\u0337a\u0337k\u0337e\u0337d\u0337", "sexual"),  # combining overlays ("zalgo")
    ("n\U0001F351a\U0001F351k\U0001F351e\U0001F351d", "sexual"),  # emoji between letters
    ("sexy 12 yo", "minors"),
    ("Taylor Swift in a bikini", "real_people"),
    ("jews are vermin", "hate"),
    ("decapitated", "violence"),
    ("su1c1de note", "self_harm"),
])
def test_evasions_are_caught(policy, text, category):
    matches = policy.check(text)
    assert matches and matches[0].category == category, (text, matches)


@pytest.mark.parametrize("text", [
    "Scunthorpe", "a therapist", "assassin bug", "a killer whale", "cocktail hour", "Essex", "grapes",
    "a field of rapeseed", "nude lipstick", "Maine Coon", "a murder of crows", "bass guitar", "class photo",
    "a baby shower", "kids at a science fair", "the naked eye", "white power outlet", "skill tree",
])
def test_ordinary_words_containing_terms_pass(policy, text):
    assert policy.check(text) == [], text


def test_user_policy_extends_and_overrides_default(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("""
lists:
  public_figures: [Jane Mayor]
allow: [bloody mary cocktail]
disable: [public_figure_photoreal]
categories:
  brand:
    description: our client's competitors
    rules:
      - id: competitor_names
        names: [Acme Corp, Globex]
      - id: coupon_codes
        regex: ['\\bcode ?[a-z]{3}\\d{2}\\b']
  violence:
    rules:
      - id: gore_terms
        terms: [gore, splatter]
""", encoding="utf-8")
    p = load_policy(f)
    assert "brand" in p.categories
    assert p.check("a billboard for Gl0bex")[0].rule == "competitor_names"
    assert p.check("use CODE abc12 today")[0].rule == "coupon_codes"
    assert p.check("Jane Mayor in lingerie")[0].rule == "public_figure_sexualised"  # list extended
    assert p.check("a realistic photo of Barack Obama") == []  # rule disabled
    assert p.check("a bloody mary cocktail") == []
    assert p.check("paint splatter")[0].rule == "gore_terms"  # rule replaced by id...
    assert p.check("decapitated") == []  # ...so its old terms are gone
    assert p.check("nude")[0].category == "sexual"  # the rest of the default stays

    only = tmp_path / "only.yaml"
    only.write_text("extends: none\ncategories:\n  x:\n    rules:\n      - {id: r, terms: [forbidden]}\n")
    q = load_policy(only)
    assert q.categories == ["x"] and q.check("nude") == [] and q.check("FORBIDDEN")[0].rule == "r"


@pytest.mark.parametrize("body,expected", [
    ("categories: {x: {rules: [{id: r, regex: ['(']}]}}", "regex"),
    ("categories: {x: {rules: [{terms: [a]}]}}", "needs an 'id'"),
    ("categories: {x: {rules: [{id: r, terms: [$nolist]}]}}", "unknown list '$nolist'"),
    ("categories: {x: {rules: [{id: r, trems: [a]}]}}", "unknown field(s) trems"),
    ("- just a list", "top level must be a mapping"),
])
def test_policy_errors_name_the_problem(tmp_path, body, expected):
    f = tmp_path / "p.yaml"
    f.write_text(body)
    with pytest.raises(PolicyError) as info:
        load_policy(f, use_default=False)
    assert expected in str(info.value) and str(f) in str(info.value)


def test_bad_policy_is_a_workflow_load_error(tmp_path):
    rt = Runtime.create(Settings.from_env(home=tmp_path))
    f = tmp_path / "p.yaml"
    f.write_text("categories: {x: {rules: [{id: r, regex: ['(']}]}}")
    with pytest.raises(WorkflowInvalid) as info:
        _workflow(rt, config=f"{{policy_file: '{f}'}}")
    assert "p.yaml" in " ".join(str(p) for p in info.value.problems)
    with pytest.raises(WorkflowInvalid) as info:
        _workflow(rt, config="{categories: [sexual, nonsense]}")
    assert "nonsense" in " ".join(str(p) for p in info.value.problems)


def test_categories_subset_only_checks_those(tmp_path):
    rt = Runtime.create(Settings.from_env(home=tmp_path))
    wf = _workflow(rt, config="{categories: [hate]}")
    assert rt.run(wf, {"prompt": "gore everywhere"}).status is RunStatus.SUCCEEDED
    assert rt.run(wf, {"prompt": "white power"}).status is RunStatus.BLOCKED


def test_moderation_targets_hold_on_the_prompt_set(policy):
    spec = importlib.util.spec_from_file_location("bench_moderation", ROOT / "bench" / "moderation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    blocked, allowed = bench.load_set()
    assert len(blocked) + len(allowed) >= 200
    assert len(blocked) >= 100 and len(allowed) >= 100
    assert {c for c, _ in blocked} == {"minors", "sexual", "real_people", "hate", "violence", "self_harm"}
    r = bench.evaluate(policy, blocked, allowed)
    assert r["recall"] >= 0.9, r["misses"]
    assert r["false_block_rate"] <= 0.05, r["false_blocks"]
    for cat, stats in r["per_category"].items():
        assert stats["blocked"] / stats["n"] >= 0.8, (cat, stats)
