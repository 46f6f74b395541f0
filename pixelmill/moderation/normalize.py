"""Text normalisation that undoes the usual filter evasions while keeping word boundaries.

``light(text)``: Unicode NFKC, case folding, look-alike letters mapped to Latin, accents and zero-width
characters removed, whitespace collapsed. Digits stay digits (for regexes such as ages).

``views(text)``: token sequences for term matching. Each token is a set of spellings (leetspeak read two
ways, since ``1`` may be ``i`` or ``l``). Two views: the plain tokens, and the same with runs of
single characters joined (``n u d e``, ``n.u.d.e`` -> ``nude``). Matching whole tokens keeps ordinary
words that merely contain a term (Scunthorpe, therapist, cocktail) out of trouble.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Letters from other scripts that look like Latin ones (lower case; text is case-folded first).
CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h",
    "ԛ": "q", "ԝ": "w", "ү": "y", "ӏ": "l", "ո": "n", "ս": "u", "г": "r", "п": "n", "ь": "b", "д": "d",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "γ": "y", "μ": "u", "ς": "s", "σ": "o", "λ": "l", "δ": "d",
    # Latin variants that NFKD does not split
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "æ": "ae", "œ": "oe", "þ": "p", "ð": "d",
    "ŋ": "n", "ɑ": "a", "ɩ": "i", "ʀ": "r", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g",
    "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s",
    "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}
INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e"), None)
# leetspeak, applied inside tokens that hold letters; two readings of ambiguous characters
LEET_A = {"0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
          "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l", "¡": "i"}
LEET_B = {**LEET_A, "1": "l", "!": "l", "|": "i", "6": "b", "9": "q"}
TOKEN = re.compile(r"[a-z0-9@$!|+*€£¡]+")
_TRAILING = "!|+"


def light(text: str, *, collapse: bool = True) -> str:
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE).casefold()
    text = "".join(CONFUSABLES.get(ch, ch) for ch in text)
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(text.split()) if collapse else text


def _spellings(raw: str) -> tuple[str, ...]:
    token = raw.strip(_TRAILING) or raw
    if token.isdigit() or not any(ch.isalpha() for ch in token):
        return (token,)
    a = "".join(LEET_A.get(ch, ch) for ch in token)
    b = "".join(LEET_B.get(ch, ch) for ch in token)
    return (a,) if a == b else (a, b)


def tokens(text_light: str) -> list[tuple[str, ...]]:
    return [_spellings(t) for t in TOKEN.findall(text_light)]


def gaps(text_light: str) -> list[str]:
    """The separator before each token (``""`` for the first)."""
    out, end = [], 0
    for m in TOKEN.finditer(text_light):
        out.append(text_light[end:m.start()])
        end = m.end()
    return out


def join_single_runs(seq: list[tuple[str, ...]], seps: list[str] | None = None) -> list[tuple[str, ...]]:
    """Join runs of 3 or more one-character tokens (``n u d e`` -> ``nude``).

    Within a run, a separator other than the usual one is a word boundary (``k.i.d.s n.u.d.e`` and
    ``K I D S   N U D E`` are two words; ``s u n   o f   a   d a y`` is "sun of a day": short words of one
    or two letters are joined too once the run has a spaced-out word of three or more).
    """
    out: list[tuple[str, ...]] = []
    run: list[tuple[str, ...]] = []
    run_seps: list[str] = []  # the separator before each token of the run but the first

    def joined(part: list[tuple[str, ...]]) -> tuple[str, ...]:
        a = "".join(t[0] for t in part)
        b = "".join(t[-1] for t in part)
        return (a,) if a == b else (a, b)

    def flush():
        if len(run) >= 3:
            if len(set(run_seps)) <= 1:
                out.append(joined(run))
            else:
                usual = max(sorted(set(run_seps)), key=run_seps.count)
                pieces, piece = [], [run[0]]
                for tok, sep in zip(run[1:], run_seps):
                    if sep != usual:
                        pieces.append(piece)
                        piece = []
                    piece.append(tok)
                pieces.append(piece)
                words = any(len(p) >= 3 for p in pieces)
                for p in pieces:
                    if len(p) >= 3 or (words and len(p) == 2):
                        out.append(joined(p))
                    else:
                        out.extend(p)
        else:
            out.extend(run)
        run.clear()
        run_seps.clear()

    for i, tok in enumerate(seq):
        sep = seps[i] if seps is not None and i < len(seps) else " "
        if len(tok[0]) == 1 and tok[0] != "_":
            if run:
                run_seps.append(sep)
            run.append(tok)
        else:
            flush()
            out.append(tok)
    flush()
    return out


_REPEATS = re.compile(r"(.)\1+")


@functools.lru_cache(maxsize=1 << 16)
def squeeze(word: str) -> str:
    """Collapse repeated letters (``nuuuude`` -> ``nude``). Cached: the rules ask for the same words often."""
    return _REPEATS.sub(r"\1", word)


def for_model(text: str) -> str:
    """Plain words for the embedding model: ``light`` text with leetspeak read back and spaced-out
    letters joined (``n.u.d.3 p1c`` -> ``nude pic``). Digits-only tokens (ages) stay as they are."""
    base = light(text)
    seq = join_single_runs(tokens(base), gaps(light(text, collapse=False)))
    return " ".join(tok[0] for tok in seq)
