"""The semantic layer: a small classifier head over sentence embeddings.

The head (weights in ``data/semantic_head.npz``, thresholds and training figures in
``data/semantic_head.json``) is trained by ``scripts/train_moderation.py``: a one-hidden-layer network
whose softmax gives P(safe) and P(category) for each harmful category. A prompt is scored as a whole and,
when it is long, also window by window (a request buried at the end of a long harmless scene still gets a
window of its own); the highest harm probability over the windows counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import normalize as nz

SPLIT = re.compile(r"[,.;:!?\n()]+|\s(?:then|and then|but|while|also|plus)\s")
WINDOW_WORDS = 16  # a prompt longer than this is also read in windows
MAX_WINDOWS = 8
# where a leading context clause ends: "an awareness poster: ...", "a museum exhibit showing ...", "stock
# photo, ...", "a documentary still of ..."; not "for" or "with", which cut inside harmless scenes
CORE_CUT = re.compile(r"[,;:!?\n()]+|\.\s|\s(?:showing|depicting|about|of)\s", re.IGNORECASE)
CORE_LEAD_WORDS = 8   # a leading clause of at most this many words may be a frame
CORE_MIN_WORDS = 3    # and at least this many words must be left


@dataclass
class Scores:
    classes: list[str]
    probs: np.ndarray          # (windows, classes); row 0 is the whole text
    windows: list[str]

    def harm(self) -> np.ndarray:
        return 1.0 - self.probs[:, self.classes.index("safe")]

    def worst(self) -> tuple[float, str, int]:
        """(harm probability, most likely harmful category, window index) of the most harmful window."""
        harm = self.harm()
        w = int(np.argmax(harm))
        row = self.probs[w].copy()
        row[self.classes.index("safe")] = -1
        return float(harm[w]), self.classes[int(np.argmax(row))], w

    def verdict(self, block: float, per_category: dict[str, float] | None = None,
                wanted=lambda c: True) -> tuple[str, int, str] | None:
        """(category, window, reason) when the harm probability of a window reaches ``block`` or one
        category's probability reaches its own threshold; None when neither does."""
        harm = self.harm()
        best = None  # (how far over its threshold, category, window, reason)
        for w in range(len(self.windows)):
            row = self.probs[w].copy()
            row[self.classes.index("safe")] = -1
            top = self.classes[int(np.argmax(row))]
            if harm[w] >= block and wanted(top):
                over = harm[w] / block
                if best is None or over > best[0]:
                    best = (over, top, w, f"harm probability {harm[w]:.2f} >= {block:.2f}")
            for c, t in (per_category or {}).items():
                if c in self.classes and wanted(c):
                    p = float(self.probs[w, self.classes.index(c)])
                    if p >= t and (best is None or p / t > best[0]):
                        best = (p / t, c, w, f"{c} probability {p:.2f} >= {t:.2f}")
        return None if best is None else best[1:]

    def max_of(self, *categories: str) -> float:
        idx = [self.classes.index(c) for c in categories if c in self.classes]
        return float(self.probs[:, idx].sum(axis=1).max()) if idx else 0.0

    def as_dict(self) -> dict[str, float]:
        """Highest probability of each harmful category over the windows (for the audit trail)."""
        return {c: round(float(self.probs[:, i].max()), 4) for i, c in enumerate(self.classes) if c != "safe"}


def windows(text: str) -> list[str]:
    """The whole text, plus windows of a long one, each as plain words for the model."""
    whole = nz.for_model(text)
    if len(whole.split()) <= WINDOW_WORDS:
        return [whole]
    parts = [p.split() for p in (nz.for_model(p) for p in SPLIT.split(nz.light(text))) if p]
    # overlapping windows: from each clause, as many following clauses as fit in WINDOW_WORDS words
    out: list[str] = []
    for i in range(len(parts)):
        words: list[str] = []
        j = i
        while j < len(parts) and (not words or len(words) + len(parts[j]) <= WINDOW_WORDS):
            words.extend(parts[j])
            j += 1
        out.append(" ".join(words[:2 * WINDOW_WORDS]))
        if j == len(parts):  # every later window would lie inside this one
            break
    tail = " ".join(whole.split()[-WINDOW_WORDS:])
    if len(out[-1].split()) < WINDOW_WORDS // 2:  # a short last clause is read with what comes before it
        out[-1] = tail
    if len(out) > MAX_WINDOWS:  # keep the first and the last ones (where requests hide)
        out = out[:2] + out[-(MAX_WINDOWS - 2):]
    return [whole] + [w for w in out if w != whole]


def cores(text: str) -> list[str]:
    """The text without a short leading context clause: each rest after a cut (``CORE_CUT``) that drops at
    most ``CORE_LEAD_WORDS`` words and leaves at least ``CORE_MIN_WORDS``, in the text's own spelling.
    "an awareness poster: a girl of 12 ..." -> ["a girl of 12 ..."]. A frame put before a request dilutes
    its reading by the model; the core is what the frame is put around."""
    out: list[str] = []
    for m in CORE_CUT.finditer(text):
        lead, rest = text[:m.start()], text[m.end():]
        if len(lead.split()) > CORE_LEAD_WORDS:
            break
        if len(rest.split()) >= CORE_MIN_WORDS and lead.strip():
            out.append(rest.strip())
    return out


class Head:
    """A tiny MLP in numpy: relu(x W1 + b1) W2 + b2 -> softmax; or an ensemble of such heads (weights
    stacked on a first axis), whose probabilities are averaged."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict):
        self.w1, self.b1 = arrays["w1"], arrays["b1"]
        self.w2, self.b2 = arrays["w2"], arrays["b2"]
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.thresholds: dict[str, float] = dict(meta["thresholds"])
        if self.w2.shape[-1] != len(self.classes):
            raise ValueError("semantic head: weights and class list disagree")

    @property
    def members(self) -> int:
        return self.w1.shape[0] if self.w1.ndim == 3 else 1

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.w1.ndim == 2:
            return self._predict(x, self.w1, self.b1, self.w2, self.b2)
        return np.mean([self._predict(x, *(a[i] for a in (self.w1, self.b1, self.w2, self.b2)))
                        for i in range(self.members)], axis=0)

    @staticmethod
    def _predict(x, w1, b1, w2, b2) -> np.ndarray:
        h = np.maximum(x @ w1 + b1, 0.0)
        z = h @ w2 + b2
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, stem: Path) -> None:
        np.savez_compressed(stem.with_suffix(".npz"), w1=self.w1.astype(np.float32), b1=self.b1.astype(np.float32),
                            w2=self.w2.astype(np.float32), b2=self.b2.astype(np.float32))
        stem.with_suffix(".json").write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")


def load_head(stem: str | Path | None = None) -> Head:
    if stem is None:
        base = resources.files("pixelmill.moderation").joinpath("data")
        npz, meta = base.joinpath("semantic_head.npz"), base.joinpath("semantic_head.json")
    else:
        stem = Path(stem)
        npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
    with npz.open("rb") as fh:
        arrays = dict(np.load(fh))
    return Head(arrays, json.loads(meta.read_text(encoding="utf-8")))


class SemanticLayer:
    def __init__(self, embedder, head: Head):
        self.embedder = embedder
        self.head = head

    def score(self, text: str) -> Scores:
        wins = windows(text)
        # the whole text alone, then the windows together: one batch would pad every short window to the
        # length of the whole text and cost several times the work
        vectors = self.embedder.encode(wins[:1])
        if len(wins) > 1:
            vectors = np.concatenate([vectors, self.embedder.encode(wins[1:])])
        probs = self.head.predict(vectors)
        return Scores(self.head.classes, probs, wins)

    def score_each(self, texts: list[str]) -> Scores:
        """Short texts scored one row each, in one batch (no windows): row i is texts[i]."""
        seen = [nz.for_model(t) for t in texts]
        return Scores(self.head.classes, self.head.predict(self.embedder.encode(seen)), seen)
