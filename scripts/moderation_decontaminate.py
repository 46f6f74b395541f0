"""Drop the rows of a blind held-out set that coincide with training rows, before its first measurement.

Usage: .venv/bin/python scripts/moderation_decontaminate.py moderation_holdout_v9.yaml [--write]

A blind set is written by someone who never saw the training rows, so a few of its rows can happen to
match one (the same famous painting, the same stock phrase). Measured as they are, those rows report what
the gate was trained on, not how it generalises. This script finds, in tests/data/NAME, every row whose
text is a training row (case-folded) or shares 60 % or more of its words (Jaccard, after the gate's model
normalisation, small function words left out) with any training row: the rows of
scripts/train_moderation.py (hand-written and seeded expansions) and of moderation_train_round6.yaml (not
trained on, but written while v5 was a development set). It prints only counts per category and kind, so
whoever runs it does not read the rows it drops; --write removes those lines from the file.
The same limits are checked by the leak and near-copy tests in tests/test_moderate.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections import Counter
from pathlib import Path

import yaml

from pixelmill.moderation.normalize import for_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
STOP = set("a an the of in on at with and to his her their its by for from is are as be it this that while "
           "into onto out up down over under after before one".split())


def words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", for_model(text)) if w not in STOP)


def near_copy(a: frozenset[str], bags: list[frozenset[str]]) -> bool:
    """True when the words ``a`` share 60 % or more (Jaccard) with one of ``bags``."""
    return bool(a) and any(len(a & b) / len(a | b) >= 0.6 for b in bags)


def training_texts() -> list[str]:
    spec = importlib.util.spec_from_file_location("train_moderation", ROOT / "scripts" / "train_moderation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = [r["text"] for r in mod.training_rows()]
    extra = yaml.safe_load((DATA / "moderation_train_round6.yaml").read_text(encoding="utf-8"))["rows"]
    return texts + [it["text"] for items in extra.values() for it in items]


def coinciding(rows: list[tuple[str, dict]], train: list[str]) -> tuple[set[str], Counter, Counter]:
    exact = {t.casefold() for t in train}
    bags = [w for w in {words(t) for t in train} if w]
    bad: set[str] = set()
    why: Counter = Counter()
    where: Counter = Counter()
    for cat, it in rows:
        text = it["text"]
        a = words(text)
        if text.casefold() in exact:
            kind = "exact"
        elif near_copy(a, bags):
            kind = "near"
        else:
            continue
        bad.add(text)
        why[kind] += 1
        where[f"{cat}/{it['kind']}"] += 1
    return bad, why, where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="file name under tests/data, e.g. moderation_holdout_v9.yaml")
    ap.add_argument("--write", action="store_true", help="remove the coinciding rows from the file")
    args = ap.parse_args()
    path = DATA / args.name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = [(c, it) for c, items in data["block"].items() for it in items] + [("allow", it) for it in data["allow"]]
    bad, why, where = coinciding(rows, training_texts())
    print(f"{args.name}: {len(rows)} rows, {len(bad)} coincide with training rows {dict(why)}")
    for key, n in sorted(where.items()):
        print(f"  {key:24} {n}")
    if args.write and bad:
        kept, dropped = [], 0
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            s = line.strip()
            if s.startswith("- {text:") and yaml.safe_load(s[2:])["text"] in bad:
                dropped += 1
                continue
            kept.append(line)
        path.write_text("".join(kept), encoding="utf-8")
        print(f"removed {dropped} lines from {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
