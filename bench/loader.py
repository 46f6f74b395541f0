"""Validation time of large workflows: N steps, each reading the previous step's output (a chain broken
into groups of 50, so ordering has real work to do), plus one step that needs the last.

    python bench/loader.py [--sizes 500 1000 2000]

Target: 2,000 steps validate in under 2 s. Prints figures measured in this run only.
"""

from __future__ import annotations

import argparse
import time

from _common import Pass, pass_chain

from pixelmill.loader import load_text
from pixelmill.registry import Registry


def workflow(n: int) -> str:
    lines = ["name: bench-loader", "steps:", *pass_chain(n, restart_every=50)]
    lines.append(f"  - {{id: last, node: bench_pass, needs: [s{n - 1}]}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    args = parser.parse_args()
    registry = Registry()
    registry.register(Pass)
    print("steps  validate_s  per_step_ms")
    for n in args.sizes:
        text = workflow(n)
        t0 = time.perf_counter()
        loaded = load_text(text, "bench.yaml", registry)
        elapsed = time.perf_counter() - t0
        assert len(loaded.order) == n + 1
        print(f"{n:5d}  {elapsed:10.3f}  {1000 * elapsed / n:11.3f}")


if __name__ == "__main__":
    main()
