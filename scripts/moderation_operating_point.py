"""Pick the semantic layer's operating point on the development sets, leave one set out.

    .venv/bin/python scripts/moderation_operating_point.py [--head STEM] [--sets holdout holdout_v2 ...]

The trained head's thresholds (``block`` on the harm probability, ``per_category``) come from out-of-fold
scores on the training rows, which are easier to tell apart than prompts written by someone else: on every
held-out set so far the gate blocked more harmless prompts than on the training rows. This script measures
the whole gate (rules, minors fail-closed, language, semantic) on the development sets (held-out v1 to v8,
all read while tuning) for a range of one knob, ``strictness`` s: every non-minors threshold t becomes
1 - s (1 - t) (s = 1: the trained thresholds; s < 1: stricter about what counts as harmful, fewer blocks).
The minors thresholds never move (minors fail closed).

Leave one set out: for each development set, s is chosen on the other sets alone (the largest s at which
every one of them has false blocks at most ``--fp`` overall and ``--fp-lookalike`` on look-alikes, with
recall at least 0.95 overall, 1.00 on minors and 0.85 in every category) and that set's figures at that s
are printed: an estimate of how the choice does on a set that did not pick it. The ceilings are below the
targets (2 %, 3 %) on purpose: each blind set so far blocked about twice as many harmless prompts as the
development sets of its round (v4 blind 3.6 % against <= 1.4 %; v5 blind 2.5 % against <= 1.4 %; v6 blind 2.8 %;
v7 blind 2.3 %; v8 blind 1.9 %). The s chosen on all the development sets is
the one to ship (``--write`` stores it in the head's JSON as ``thresholds.strictness``; the gate applies
it). Embeddings are computed once per text (the head does not change), so the sweep takes a minute or two.
The blind set (v9) is never read here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    """bench/moderation.py: the development sets and how their rows are read."""
    spec = importlib.util.spec_from_file_location("bench_moderation", ROOT / "bench" / "moderation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()
DEV_SETS = tuple(BENCH.DEVELOPMENT)
GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def _rows(name: str) -> list[dict]:
    return [r for r in BENCH.holdout_rows(BENCH.DEVELOPMENT[name][0])
            if r["label"] != "safe" or r["kind"] != "non_english"]  # these get the configured non_english action


def figures(decisions: list[tuple[dict, bool]]) -> dict:
    harmful = [(r, b) for r, b in decisions if r["label"] != "safe"]
    harmless = [(r, b) for r, b in decisions if r["label"] == "safe"]
    look = [(r, b) for r, b in harmless if r["kind"] == "lookalike"]
    per = {}
    for cat in sorted({r["label"] for r, _ in harmful}):
        got = [b for r, b in harmful if r["label"] == cat]
        per[cat] = sum(got) / len(got)
    rate = lambda pairs: sum(b for _, b in pairs) / len(pairs) if pairs else 0.0  # noqa: E731
    return {"recall": rate(harmful), "per_category": per, "false_blocks": rate(harmless),
            "false_lookalike": rate(look), "n": (len(harmful), len(harmless), len(look)),
            "fb_count": (sum(b for _, b in harmless), sum(b for _, b in look))}


def acceptable(f: dict, fp: float, fp_look: float) -> bool:
    return (f["false_blocks"] <= fp and f["false_lookalike"] <= fp_look and f["recall"] >= 0.95
            and f["per_category"].get("minors", 1.0) >= 1.0 and min(f["per_category"].values()) >= 0.85)


def choose(per_set: dict[float, list[dict]], fp: float, fp_look: float) -> float:
    """The largest acceptable s; the smallest of the grid when none is (``met`` says which)."""
    return max(met(per_set, fp, fp_look) or [min(GRID)])


def met(per_set: dict[float, list[dict]], fp: float, fp_look: float) -> list[float]:
    return [s for s in GRID if all(acceptable(f, fp, fp_look) for f in per_set[s])]


def lowest_with_recall(per_set: dict[float, list[dict]], pooled: dict[float, dict], floor: float, fp: float,
                       fp_look: float) -> float | None:
    """The smallest s (fewest blocks) at which every set meets the ceilings and the pooled recall is at least
    ``floor``; None when no s does."""
    ok = [s for s in met(per_set, fp, fp_look) if pooled[s]["recall"] >= floor]
    return min(ok) if ok else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", help="a trained head's stem (FILE.npz + FILE.json) instead of the shipped one")
    ap.add_argument("--sets", nargs="+", choices=DEV_SETS, default=list(DEV_SETS))
    ap.add_argument("--fp", type=float, default=0.0125, help="false-block ceiling on each picking set (overall)")
    ap.add_argument("--fp-lookalike", type=float, default=0.02, help="the same on their look-alikes")
    ap.add_argument("--recall-floor", type=float,
                    help="choose on all sets instead the smallest s (fewest blocks) whose pooled recall is at "
                         "least this and at which every set meets the ceilings (e.g. the pooled recall of the "
                         "shipped configuration, so that a new head blocks fewer harmless prompts without "
                         "letting more harmful ones through); the leave-one-set-out lines are unchanged")
    ap.add_argument("--write", action="store_true", help="store the strictness chosen on all sets in the head")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from pixelmill.moderation import load_policy
    from pixelmill.moderation.embedding import load_embedder
    from pixelmill.moderation.gate import Gate, GateSettings
    from pixelmill.moderation.semantic import SemanticLayer, load_head

    head = load_head(args.head)
    trained = dict(head.thresholds)
    layer = SemanticLayer(load_embedder(), head)
    cache: dict[str, object] = {}
    score = layer.score
    layer.score = lambda text: cache[text] if text in cache else cache.setdefault(text, score(text))
    gate = Gate(load_policy(), GateSettings(), semantic=layer)
    rows = {name: _rows(name) for name in args.sets}
    results: dict[float, dict[str, list]] = {}
    for s in GRID:
        head.thresholds = {**trained, "strictness": s}
        results[s] = {name: [(r, not gate.check(r["text"]).allowed) for r in rs] for name, rs in rows.items()}
        print(f"strictness {s:.1f}: " + "  ".join(
            f"{n} R {f['recall']:.3f} low {min(f['per_category'].values()):.3f} "
            f"FB {f['false_blocks']:.3f}/{f['false_lookalike']:.3f}"
            for n in args.sets for f in [figures(results[s][n])]), flush=True)
    head.thresholds = trained

    def line(name: str, s: float, f: dict) -> str:
        low = min(f["per_category"], key=f["per_category"].get)
        return (f"{name:<11} s={s:.1f}  recall {f['recall']:.3f}  minors {f['per_category'].get('minors', 1):.3f}  "
                f"lowest {low} {f['per_category'][low]:.3f}  false blocks {f['false_blocks']:.3f} "
                f"({f['fb_count'][0]} of {f['n'][1]})  look-alikes {f['false_lookalike']:.3f} "
                f"({f['fb_count'][1]} of {f['n'][2]})")

    print("\nleave one set out (s picked on the other sets, figures of the set left out):")
    for name in args.sets:
        others = [n for n in args.sets if n != name]
        per_set = {s: [figures(results[s][n]) for n in others] for s in GRID}
        s = choose(per_set, args.fp, args.fp_lookalike)
        print(line(name, s, figures(results[s][name])) +
              ("" if met(per_set, args.fp, args.fp_lookalike) else "  (no s met the ceilings: grid minimum)"))
    pooled = {s: figures([p for n in args.sets for p in results[s][n]]) for s in GRID}
    per_set = {s: [figures(results[s][n]) for n in args.sets] for s in GRID}
    s = choose(per_set, args.fp, args.fp_lookalike)
    print("\nchosen on all of them: " + line("pooled", s, pooled[s]) +
          ("" if met(per_set, args.fp, args.fp_lookalike) else "  (no s met the ceilings: grid minimum)"))
    if args.recall_floor is not None:
        s = lowest_with_recall(per_set, pooled, args.recall_floor, args.fp, args.fp_lookalike)
        if s is None:
            print(f"no s meets the ceilings with pooled recall >= {args.recall_floor}: nothing chosen")
            return 1
        print(f"smallest s with pooled recall >= {args.recall_floor}: " + line("pooled", s, pooled[s]))
    if args.write:
        stem = Path(args.head) if args.head else ROOT / "pixelmill" / "moderation" / "data" / "semantic_head"
        meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        meta["thresholds"]["strictness"] = s
        meta["strictness_chosen_on"] = {"sets": list(args.sets), "fp": args.fp, "fp_lookalike": args.fp_lookalike,
                                        "by": "scripts/moderation_operating_point.py"}
        if args.recall_floor is not None:
            meta["strictness_chosen_on"]["recall_floor"] = args.recall_floor
        stem.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        print(f"wrote strictness {s} to {stem.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
