"""Measure the moderation policy on the labelled prompt set in tests/data/moderation_prompts.yaml.

Usage: .venv/bin/python bench/moderation.py [--policy FILE] [--data FILE] [--verbose]
Prints recall per blocked category (blocked at all, and filed under the expected category), overall
recall, the false-block rate on harmless prompts, every miss and every false block, and the speed.
Targets: recall >= 0.90, false blocks <= 0.05.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from pixelmill.moderation import load_policy

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "moderation_prompts.yaml"
RECALL_TARGET, FALSE_BLOCK_TARGET = 0.90, 0.05


def load_set(path: Path = DATA) -> tuple[list[tuple[str, str]], list[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    blocked = [(cat, item["text"]) for cat, items in data["block"].items() for item in items]
    allowed = [item["text"] for item in data["allow"]]
    return blocked, allowed


def evaluate(policy, blocked, allowed) -> dict:
    per_cat: dict[str, dict[str, int]] = {}
    misses, wrong_cat, false_blocks = [], [], []
    for cat, text in blocked:
        stats = per_cat.setdefault(cat, {"n": 0, "blocked": 0, "right_category": 0})
        stats["n"] += 1
        matches = policy.check(text)
        if matches:
            stats["blocked"] += 1
            if matches[0].category == cat:
                stats["right_category"] += 1
            else:
                wrong_cat.append((cat, text, matches[0].category, matches[0].rule))
        else:
            misses.append((cat, text))
    for text in allowed:
        matches = policy.check(text)
        if matches:
            false_blocks.append((text, matches[0].category, matches[0].rule, matches[0].term))
    n_block = len(blocked)
    recall = sum(s["blocked"] for s in per_cat.values()) / n_block
    return {"per_category": per_cat, "recall": recall, "false_block_rate": len(false_blocks) / len(allowed),
            "misses": misses, "wrong_category": wrong_cat, "false_blocks": false_blocks,
            "n_blocked": n_block, "n_allowed": len(allowed)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policy", help="policy YAML extending the default")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--verbose", action="store_true", help="also list prompts filed under another category")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    policy = load_policy(args.policy)
    t_load = time.perf_counter() - t0
    blocked, allowed = load_set(Path(args.data))
    t0 = time.perf_counter()
    r = evaluate(policy, blocked, allowed)
    dt = time.perf_counter() - t0
    print(f"prompt set: {r['n_blocked']} to block, {r['n_allowed']} harmless ({r['n_blocked'] + r['n_allowed']} in all)")
    print(f"{'category':<12} {'n':>4} {'recall':>7} {'same category':>14}")
    for cat, s in r["per_category"].items():
        print(f"{cat:<12} {s['n']:>4} {s['blocked'] / s['n']:>7.3f} {s['right_category'] / s['n']:>14.3f}")
    print(f"recall on blocked categories: {r['recall']:.3f} (target >= {RECALL_TARGET})")
    print(f"false-block rate on harmless: {r['false_block_rate']:.3f} "
          f"({len(r['false_blocks'])}/{r['n_allowed']}, target <= {FALSE_BLOCK_TARGET})")
    for cat, text in r["misses"]:
        print(f"  missed [{cat}]: {text}")
    for text, cat, rule, term in r["false_blocks"]:
        print(f"  false block [{cat}/{rule} on {term!r}]: {text}")
    if args.verbose:
        for cat, text, got, rule in r["wrong_category"]:
            print(f"  filed under {got}/{rule}, expected {cat}: {text}")
    n = r["n_blocked"] + r["n_allowed"]
    print(f"policy compile {t_load * 1000:.0f} ms; check {dt / n * 1000:.2f} ms per prompt")
    ok = r["recall"] >= RECALL_TARGET and r["false_block_rate"] <= FALSE_BLOCK_TARGET
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
