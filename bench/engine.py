"""Engine overhead: in-process cost per step of a 10-step trivial workflow with SQLite persistence,
and the CLI's start-to-finish time for the same workflow.

    python bench/engine.py [--runs 50]

Target: < 2 ms per step in process, and < 2 ms per item of a ``for_each`` step (the time of a run
with N items minus that of a run with none, divided by N). Prints measured figures from this run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Pass, pass_chain

from pixelmill.loader import load_text
from pixelmill.registry import Registry
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings


def chain(node: str, n: int = 10) -> str:
    lines = ["# yaml-language-server: $schema=./pixelmill.schema.json", "name: bench-chain", "steps:"]
    if node == "bench_pass":
        return "\n".join(lines + pass_chain(n)) + "\n"
    for i in range(n):
        prev = "start" if i == 0 else f"${{{{ steps.s{i - 1}.outputs.text }}}}"
        lines.append(f"  - {{id: s{i}, node: prompt, with: {{template: 'x', vars: {{p: '{prev}'}}, seed: 1}}}}")
    return "\n".join(lines) + "\n"


FAN_ITEMS = 200


def fan_out(max_parallel: int) -> str:
    return (f"name: bench-fan\ninputs: {{xs: {{type: list, default: []}}}}\nsteps:\n"
            f"  - {{id: each, node: bench_pass, for_each: '${{{{ inputs.xs }}}}', max_parallel: {max_parallel}, "
            f"with: {{value: '${{{{ item }}}}'}}}}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry.from_entry_points()
        registry.register(Pass)
        rt = Runtime.create(Settings.from_env(home=Path(tmp) / "home"), registry=registry)
        wf = load_text(chain("bench_pass"), "chain.yaml", registry)
        for _ in range(5):  # warm-up: imports, compiled expressions, SQLite pages
            rt.run(wf)
        per_run = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = rt.run(wf)
            per_run.append(time.perf_counter() - t0)
            assert result.status.value == "succeeded" and result.steps["s9"].outputs == {"value": 10}
        fan = {}
        for parallel in (1, 4):
            wf_each = load_text(fan_out(parallel), "fan.yaml", registry)
            times = {}
            for n in (0, FAN_ITEMS):
                rt.run(wf_each, {"xs": list(range(n))})  # warm-up
                times[n] = []
                for _ in range(max(3, args.runs // 10)):
                    t0 = time.perf_counter()
                    result = rt.run(wf_each, {"xs": list(range(n))})
                    times[n].append(time.perf_counter() - t0)
                    assert result.status.value == "succeeded" and len(result.steps["each"].outputs["value"]) == n
            fan[parallel] = (statistics.median(times[FAN_ITEMS]) - statistics.median(times[0])) / FAN_ITEMS * 1000
        rt.close()
        steps = len(wf.order)
        med = statistics.median(per_run) / steps * 1000
        p90 = sorted(per_run)[int(0.9 * len(per_run))] / steps * 1000
        print(f"in-process, {steps}-step chain, SQLite WAL, {args.runs} runs: "
              f"median {med:.3f} ms/step, p90 {p90:.3f} ms/step (target < 2 ms/step: "
              f"{'met' if med < 2 else 'NOT met'}; ratio to target {med / 2:.2f})")

        for parallel, per_item in fan.items():
            print(f"in-process, for_each over {FAN_ITEMS} items, max_parallel {parallel}: {per_item:.3f} ms/item "
                  f"overhead (target < 2 ms/item: {'met' if per_item < 2 else 'NOT met'}; "
                  f"ratio to target {per_item / 2:.2f})")

        wf_file = Path(tmp) / "chain.yaml"
        wf_file.write_text(chain("prompt"))
        env = dict(os.environ, PIXELMILL_HOME=str(Path(tmp) / "cli-home"))
        cli_times = []
        for _ in range(args.cli_runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pixelmill.cli", "run", str(wf_file)], env=env, check=True,
                           capture_output=True)
            cli_times.append(time.perf_counter() - t0)
        print(f"CLI 'pixelmill run' start to finish, 10-step prompt chain, {args.cli_runs} runs: "
              f"median {statistics.median(cli_times):.3f} s (min {min(cli_times):.3f}, max {max(cli_times):.3f})")


if __name__ == "__main__":
    main()
