"""What the CLI prints (issue 9, item 30): live progress with parallel steps, `nodes`, `validate --json`."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

from click.testing import CliRunner

from pixelmill.cli import main
from pixelmill.cli.progress import Progress
from pixelmill.events import Event, EventKind
from pixelmill.loader import load_text

from .conftest import dedent


def screen(chunks: list[str]) -> list[str]:
    """What a terminal shows after these writes: `\\r` returns to the line start and overwrites."""
    lines, cur, col = [], [], 0
    for ch in "".join(chunks):
        if ch == "\n":
            lines.append("".join(cur).rstrip())
            cur, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
    if cur:
        lines.append("".join(cur).rstrip())
    return lines


def progress(total: int):
    return Progress(SimpleNamespace(order=[f"s{i}" for i in range(total)]))


def ev(kind, step, **data):
    return Event(kind, "r1", step, data)


def test_parallel_steps_get_distinct_numbers_and_no_leftover_characters(capsys):
    p = progress(5)
    p.on_event(ev(EventKind.STEP_FINISHED, "prompt", status="cached", duration_s=0.0))
    p.on_event(ev(EventKind.STEP_STARTED, "gen", node="generate_image", attempt=1))
    p.on_event(ev(EventKind.STEP_STARTED, "caption", node="caption", attempt=1))  # in parallel with gen
    p.on_event(ev(EventKind.STEP_PROGRESS, "gen", value=10, total=20, message="denoising the long way round"))
    p.on_event(ev(EventKind.STEP_STARTED, "label", node="label_ai", attempt=1))  # while gen's \r line is up
    p.on_event(ev(EventKind.STEP_PROGRESS, "gen", value=19, total=20, message="x"))
    p.on_event(ev(EventKind.STEP_FINISHED, "caption", status="succeeded", duration_s=0.5))
    p.on_event(ev(EventKind.STEP_FAILED, "gen", status="failed", duration_s=1.0,
                  error={"message": "step 'gen' failed: boom"}))
    p.on_event(ev(EventKind.STEP_SKIPPED, "post", status="cancelled", reason="the run stopped before this step"))
    shown = screen([capsys.readouterr().err])
    starts = [line.split()[0] for line in shown if line.startswith("[")]
    assert starts == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], shown  # each number once
    assert "[4/5] label (label_ai) ..." in shown  # the progress line was cleared, not appended to
    assert "    gen: 19/20 x" not in shown and not any("x round" in line for line in shown)
    assert "    caption: ok 0.50 s" in shown
    assert "[5/5] post: not run: an earlier step failed" in shown
    assert not any("cancelled" in line for line in shown)


def test_progress_is_safe_from_several_threads(capsys):
    p = progress(200)
    threads = [threading.Thread(target=p.on_event, args=(ev(EventKind.STEP_STARTED, f"s{i}", node="t"),))
               for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(int(line.split("/")[0][1:]) for line in screen([capsys.readouterr().err]))
    assert numbers == list(range(1, 201))


def test_reused_step_shows_as_reused_not_zero_attempts(capsys):
    p = progress(2)
    p.on_event(ev(EventKind.STEP_FINISHED, "a", status="succeeded", attempts=0, duration_s=0.0, reused=True))
    assert screen([capsys.readouterr().err]) == ["[1/2] a: reused from the earlier run"]


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_nodes_lists_whole_first_sentence_inputs_and_outputs():
    out = cli("nodes")
    assert out.exit_code == 0
    text = out.stdout
    # the label_ai docstring's first sentence spans three source lines
    assert ("Label an image as AI-generated: a visible badge, IPTC `DigitalSourceType` in XMP, the generation "
            "parameters (PNG `parameters` text chunk and XMP), an invisible watermark and, when configured, a "
            "signed C2PA manifest.") in text
    assert "    inputs:  template, choices, vars, seed\n    outputs: text, seed, choices\n" in text
    assert "pixelmill nodes TYPE" in out.stderr


def test_nodes_type_describes_one_node():
    out = cli("nodes", "caption")
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert text.startswith("caption@1  [pixelmill]  gpu")
    assert "greedy or beam search, several images in one batch" in text  # the whole docstring, to its end
    assert "device  str, default \"auto\"" in text and "cuda:N" in text
    assert "max_tokens   int, default 30" in text and "outputs (steps.<id>.outputs.<name>)" in text
    assert "Literal[" not in text and "<class" not in text
    one = json.loads(cli("nodes", "caption@1", "--json").stdout)
    assert one["type"] == "caption" and "image" in one["inputs"]["properties"]
    bad = cli("nodes", "captoin")
    assert bad.exit_code == 1 and "no node type 'captoin' (did you mean 'caption'?)" in bad.stderr


def test_validate_json(tmp_path, registry):
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nsteps:\n  - {id: a, node: prompt, with: {template: hi}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - id: a\n    node: promt\n")
    out = cli("validate", "--json", str(good), str(bad))
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["valid"] is False and data["files"] == 2
    assert data["workflows"] == [{"file": str(good), "name": "good", "steps": 1, "valid": True}]
    assert data["problems"] == [{"file": str(bad), "line": 4, "col": 11, "message": "step 'a': unknown node 'promt'",
                                 "hint": "did you mean 'prompt'?", "level": "error"}]
    ok = cli("validate", "--json", str(good))
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True
    load_text(good.read_text(), "good.yaml", registry)  # the same file loads in-process too


def test_run_progress_on_a_terminal_has_no_repeated_numbers(runtime, capsys):
    wf = load_text(dedent("""
        name: par
        steps:
          - {id: a, node: t_sleep, with: {seconds: 0.2}}
          - {id: b, node: t_sleep, with: {seconds: 0.2}}
          - {id: c, node: t_sleep, with: {seconds: 0.2}}
          - {id: d, node: t_echo, with: {value: '${{ steps.a.outputs }}'}}
    """), "par.yaml", runtime.registry)
    p = Progress(wf)
    unsubscribe = runtime.bus.subscribe(p.on_event)
    try:
        assert runtime.run(wf).status.value == "succeeded"
    finally:
        unsubscribe()
    shown = screen([capsys.readouterr().err])
    numbers = [line.split()[0] for line in shown if line.startswith("[")]
    assert sorted(numbers) == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], shown
