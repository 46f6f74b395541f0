"""Moderation policies: YAML files of categories, rules, named term lists and allow-lists.

Policy file layout::

    version: 1
    lists:                      # named term lists, used in rules as "$name"
      minors: [child, kid, ...]
    allow: [killer whale, nude lipstick]    # phrases never counted (matched like terms)
    categories:
      sexual:
        description: explicit sexual content and nudity
        rules:
          - id: explicit_terms
            terms: [porn, "$explicit"]       # a term is a word or phrase; "word*" matches a prefix
          - id: ages
            regex: ['\\b1[0-7] ?(yo|y/o)\\b']   # on normalised text
          - id: sexualised_minors
            all_of:                           # every clause must match
              - {terms: ["$minors"]}
              - {terms: ["$suggestive"]}
            allow: [...]                      # extra allow phrases for this rule

A user policy extends the default one: ``lists`` add to the lists of that name (``lists_replace``
replaces them), ``allow`` adds phrases, rules with a known ``id`` replace that rule and new ones are added,
``disable`` lists rule ids or category names to switch off, ``enable`` switches back on what an earlier layer
disabled (the default policy ships ``public_figure_photoreal`` disabled: ``enable: [public_figure_photoreal]``
is the stricter opt-in). ``extends: none`` starts from nothing.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import normalize as nz

# An article after a word starts the next phrase: "shot a" is "shot a", not a split-up "shota".
_ARTICLES = frozenset({"a", "an", "the"})


class PolicyError(ValueError):
    """A policy file or mapping is malformed (the message names the file and the field)."""


@dataclass
class Match:
    category: str
    rule: str
    term: str
    text_index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "rule": self.rule, "term": self.term, "text_index": self.text_index}


_NEGATABLE = r"(?:gore|gory|blood|bloody|nudity|nude|naked|nsfw|violence|violent|explicit|sexual content|sexual)"
# "no gore", "without nudity", "non-violent", "no blood or gore": a harm word negated right before it.
NEGATED = re.compile(r"\b(?:no|non|without|zero|not)[\s-]+" + _NEGATABLE +
                     r"(?:\s*(?:,|or|and|nor|/)\s*(?:any\s+)?" + _NEGATABLE + r")*\b", re.IGNORECASE)


def drop_negated(text: str) -> str:
    """The text without negated harm words ("a zombie poster, no gore" -> "a zombie poster, "). Narrow on
    purpose: only the words in ``_NEGATABLE``, only right after the negation; every other word still counts
    ("no gore, guts spilling out" still matches "guts spilling")."""
    return NEGATED.sub(" ", text)


def _es_plural(word: str) -> bool:
    """Whether ``word`` may be a plural in -es (kisses, matches, boxes): not "spices" -> "spic"."""
    return word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh", "o"))


class _Terms:
    """A compiled list of terms: single words, word prefixes and multi-word phrases."""

    def __init__(self, terms: list[str]):
        self.words: dict[str, set[str]] = {}  # squeezed -> original spellings
        self.prefixes: list[str] = []
        self.phrases: list[list[str]] = []
        self.masked: list[str] = []
        # phrases indexed by their squeezed first word, so a lookup only tries the phrases that can start here
        self._by_first: dict[str, list[list[str]]] = {}
        self._star_first: list[list[str]] = []
        self._hits: dict[tuple[str, bool], str | None] = {}
        for term in terms:
            words = nz.TOKEN.findall(nz.light(term))
            words = ["".join(nz.LEET_A.get(c, c) if c not in "*" else c for c in w) if not w.isdigit() else w
                     for w in words]
            if not words:
                continue
            if len(words) == 1:
                self._add_word(words[0])
            else:
                self.phrases.append(words)
                first = words[0]
                if first.endswith("*"):
                    self._star_first.append(words)
                else:
                    self._by_first.setdefault(nz.squeeze(first), []).append(words)
                if all(not w.endswith("*") for w in words):
                    self._add_word("".join(words))  # "childporn", "#KillYourself"

    def _add_word(self, word: str) -> None:
        if word.endswith("*"):
            self.prefixes.append(word[:-1])
        else:
            self.words.setdefault(nz.squeeze(word), set()).add(word)

    def word_hit(self, spelling: str, *, joined: bool = False) -> str | None:
        """The term a single token spelling stands for, or None (remembered per spelling)."""
        key = (spelling, joined)
        try:
            return self._hits[key]
        except KeyError:
            pass
        hit = self._word_hit(spelling, joined)
        if len(self._hits) < 50_000:
            self._hits[key] = hit
        return hit

    def _word_hit(self, spelling: str, joined: bool) -> str | None:
        for cand in (spelling, spelling[:-1] if spelling.endswith("s") else None,
                     spelling[:-2] if _es_plural(spelling) else None):
            if not cand:
                continue
            for term in self.words.get(nz.squeeze(cand), ()):
                # squeezing must not turn "as" into "ass": the token needs at least the term's letters
                if len(cand) >= len(term) and (not joined or len(term) >= 4):
                    return term
        if "*" in spelling and spelling.strip("*"):
            pattern = re.compile("^" + re.escape(spelling).replace(r"\*", "[a-z]") + "$")
            for group in self.words.values():
                for term in group:
                    if len(term) >= 4 and pattern.match(term):
                        return term
        if not joined:
            for prefix in self.prefixes:
                if spelling.startswith(prefix):
                    return prefix + "*"
        return None

    def _pos_hit(self, tok: tuple[str, ...], word: str) -> bool:
        for s in tok:
            if word.endswith("*"):
                if s.startswith(word[:-1]):
                    return True
            elif s == word or s == word + "s" or (s == word + "es" and _es_plural(s)) or (
                    nz.squeeze(s) == nz.squeeze(word) and len(s) >= len(word)):
                return True
        return False

    def phrases_at(self, tok: tuple[str, ...]) -> list[list[str]]:
        """The phrases whose first word this token may be (a superset; ``_pos_hit`` decides)."""
        out: list[list[str]] = []
        for s in tok:
            q = nz.squeeze(s)
            for key in {q, q[:-1] if q.endswith("s") else q, q[:-2] if q.endswith("es") else q}:
                out.extend(self._by_first.get(key, ()))
        if self._star_first:
            out.extend(self._star_first)
        return out

    def find(self, seq: list[tuple[str, ...]]) -> str | None:
        n = len(seq)
        for i, tok in enumerate(seq):
            # the longest phrase that starts here before a single word: "sex tape" is explicit where
            # "sex" alone is ambiguous
            best = None
            for phrase in self.phrases_at(tok):
                k = len(phrase)
                if i + k <= n and (best is None or k > len(best)) and \
                        all(self._pos_hit(seq[i + j], phrase[j]) for j in range(k)):
                    best = phrase
            if best is not None:
                return " ".join(best)
            for s in tok:
                hit = self.word_hit(s)
                if hit:
                    return hit
            # split-word evasion: "nu de", "pedo phile" -> a whole term when joined
            for k in (2, 3):
                if i + k <= n:
                    parts = seq[i:i + k]
                    if any(p[0] == "_" for p in parts) or parts[-1][0] in _ARTICLES:
                        continue
                    for pick in (0, -1):
                        joined = "".join(p[pick] for p in parts)
                        hit = self.word_hit(joined, joined=True)
                        if hit:
                            return hit
        return None


@dataclass
class _Clause:
    terms: _Terms | None
    regexes: list[re.Pattern]
    term_source: list[str] = field(default_factory=list)

    def find(self, text_light: str, seqs: list[list[tuple[str, ...]]]) -> str | None:
        for rx in self.regexes:
            m = rx.search(text_light)
            if m:
                return m.group(0).strip()
            for seq in seqs:
                m = rx.search(" ".join(t[0] for t in seq))
                if m:
                    return m.group(0).strip()
        if self.terms is not None:
            for seq in seqs:
                hit = self.terms.find(seq)
                if hit:
                    return hit
        return None


@dataclass
class _Rule:
    id: str
    category: str
    clauses: list[_Clause]
    allow: _Terms | None


def _mask(seq: list[tuple[str, ...]], allow: _Terms | None) -> list[tuple[str, ...]]:
    """Replace every token covered by an allowed phrase or word with the placeholder ``_``."""
    if allow is None:
        return seq
    out = list(seq)
    n = len(seq)
    for i in range(n):
        for phrase in allow.phrases_at(seq[i]):
            k = len(phrase)
            if i + k <= n and all(allow._pos_hit(seq[i + j], phrase[j]) for j in range(k)):
                for j in range(k):
                    out[i + j] = ("_",)
        for s in seq[i]:
            if allow.word_hit(s):
                out[i] = ("_",)
                break
    return out


@functools.lru_cache(maxsize=64)
def _allow_regex(allow_phrases: tuple[str, ...]) -> re.Pattern | None:
    """One pattern for a list of allow phrases (longest first), compiled once per list."""
    alts = {r"\W+".join(map(re.escape, words)) for words in
            (nz.TOKEN.findall(nz.light(p)) for p in allow_phrases) if words}
    if not alts:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(alts, key=len, reverse=True)) + r")\b")


def _mask_light(text: str, allow_phrases: list[str]) -> str:
    rx = _allow_regex(tuple(allow_phrases))
    return rx.sub(" _ ", text) if rx is not None else text


class Policy:
    """A compiled policy. ``check(text)`` returns every match (empty = allowed)."""

    def __init__(self, data: dict[str, Any], source: str = "<policy>"):
        self.source = source
        self.data = data
        lists = data.get("lists") or {}
        if not isinstance(lists, dict):
            raise PolicyError(f"{source}: 'lists' must be a mapping of name -> list of terms")
        self.lists = {str(k): [str(x) for x in (v or [])] for k, v in lists.items()}
        disabled = set(map(str, data.get("disable") or [])) - set(map(str, data.get("enable") or []))
        self.allow_phrases = self._expand(data.get("allow") or [], f"{source}: allow")
        self.allow = _Terms(self.allow_phrases)
        self.rules: list[_Rule] = []
        categories = data.get("categories") or {}
        if not isinstance(categories, dict):
            raise PolicyError(f"{source}: 'categories' must be a mapping of category name -> rules")
        for cat, body in categories.items():
            if cat in disabled:
                continue
            rules = (body or {}).get("rules") or []
            if not isinstance(rules, list):
                raise PolicyError(f"{source}: categories.{cat}.rules must be a list")
            for n, rule in enumerate(rules):
                where = f"{source}: categories.{cat}.rules[{n}]"
                if not isinstance(rule, dict) or not rule.get("id"):
                    raise PolicyError(f"{where}: each rule needs an 'id'")
                if rule["id"] in disabled:
                    continue
                self.rules.append(self._rule(str(cat), rule, where))
        self.categories = sorted({r.category for r in self.rules})
        known = set(categories) | {str(r.get("id")) for body in categories.values()
                                   for r in ((body or {}).get("rules") or []) if isinstance(r, dict)}
        unknown = sorted(set(map(str, data.get("enable") or [])) - known)
        if unknown:
            raise PolicyError(f"{source}: enable: unknown rule or category {', '.join(unknown)}")

    def _expand(self, items, where: str) -> list[str]:
        if isinstance(items, str):
            items = [items]
        out = []
        for item in items:
            item = str(item)
            if item.startswith("$"):
                name = item[1:]
                if name not in self.lists:
                    raise PolicyError(f"{where}: unknown list '${name}' (define it under 'lists:')")
                out.extend(self.lists[name])
            else:
                out.append(item)
        return out

    def _clause(self, body: dict, where: str) -> _Clause:
        unknown = set(body) - {"terms", "names", "regex", "id", "allow", "all_of", "description"}
        if unknown:
            raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        terms = self._expand(body.get("terms") or [], f"{where}.terms") + \
            self._expand(body.get("names") or [], f"{where}.names")
        regexes = []
        for rx in ([body["regex"]] if isinstance(body.get("regex"), str) else body.get("regex") or []):
            try:
                regexes.append(re.compile(self._list_alternation(str(rx), where)))
            except re.error as exc:
                raise PolicyError(f"{where}.regex {rx!r}: {exc}") from None
        if not terms and not regexes:
            raise PolicyError(f"{where}: needs 'terms', 'names' or 'regex'")
        return _Clause(_Terms(terms) if terms else None, regexes, terms)

    def _list_alternation(self, rx: str, where: str) -> str:
        """``{$name}`` in a regex becomes a group matching any term of that list (normalised)."""
        def repl(m: re.Match) -> str:
            name = m.group(1)
            if name not in self.lists:
                raise PolicyError(f"{where}.regex: unknown list '${name}' (define it under 'lists:')")
            alts = {r"\W+".join(map(re.escape, nz.TOKEN.findall(nz.light(t)))) for t in self.lists[name]}
            return "(?:" + "|".join(sorted((a for a in alts if a), key=len, reverse=True)) + ")"
        return re.sub(r"\{\$(\w+)\}", repl, rx)

    def _rule(self, category: str, rule: dict, where: str) -> _Rule:
        if "all_of" in rule:
            if not isinstance(rule["all_of"], list) or not rule["all_of"]:
                raise PolicyError(f"{where}.all_of must be a non-empty list of clauses")
            clauses = [self._clause(c, f"{where}.all_of[{i}]") for i, c in enumerate(rule["all_of"])]
            extra = set(rule) - {"id", "all_of", "allow", "description"}
            if extra:
                raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(extra))} beside all_of")
        else:
            clauses = [self._clause(rule, where)]
        allow = self._expand(rule.get("allow") or [], f"{where}.allow")
        return _Rule(str(rule["id"]), category, clauses, _Terms(allow) if allow else None)

    def check(self, text: str, *, text_index: int = 0, first_only: bool = False) -> list[Match]:
        text = drop_negated(text)
        base = nz.light(text)
        text_light = _mask_light(base, self.allow_phrases)
        toks = nz.tokens(base)
        seqs = [_mask(toks, self.allow)]
        seqs.append(nz.join_single_runs(seqs[0], nz.gaps(nz.light(text, collapse=False))))
        matches: list[Match] = []
        for rule in self.rules:
            rseqs, rlight = seqs, text_light
            if rule.allow is not None:
                rseqs = [_mask(s, rule.allow) for s in seqs]
                rlight = _mask_light(text_light, [" ".join(p) for p in rule.allow.phrases] +
                                     [w for g in rule.allow.words.values() for w in g])
            hits = []
            for clause in rule.clauses:
                hit = clause.find(rlight, rseqs)
                if hit is None:
                    break
                hits.append(hit)
            else:
                matches.append(Match(rule.category, rule.id, " + ".join(hits), text_index))
                if first_only:
                    break
        return matches


# ---- loading and merging -----------------------------------------------------------------------------------

def default_policy_data() -> dict[str, Any]:
    text = resources.files("pixelmill_nodes").joinpath("policies/default.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path}: top level must be a mapping (version, lists, allow, categories)")
    return data


def merge(base: dict[str, Any], extra: dict[str, Any], source: str = "<policy>") -> dict[str, Any]:
    """``base`` extended by ``extra`` (see the module docstring)."""
    out = copy.deepcopy(base)
    for name, items in (extra.get("lists") or {}).items():
        out.setdefault("lists", {}).setdefault(name, [])
        out["lists"][name] = list(out["lists"][name]) + list(items or [])
    for name, items in (extra.get("lists_replace") or {}).items():
        out.setdefault("lists", {})[name] = list(items or [])
    out["allow"] = list(out.get("allow") or []) + list(extra.get("allow") or [])
    enable = {str(x) for x in (extra.get("enable") or [])}
    out["disable"] = [d for d in list(out.get("disable") or []) + list(extra.get("disable") or [])
                      if str(d) not in enable]
    out["enable"] = [] if "enable" not in extra else sorted(enable)
    cats = out.setdefault("categories", {})
    for cat, body in (extra.get("categories") or {}).items():
        body = body or {}
        target = cats.setdefault(cat, {"rules": []})
        if body.get("description"):
            target["description"] = body["description"]
        rules = target.setdefault("rules", [])
        for rule in body.get("rules") or []:
            if not isinstance(rule, dict) or "id" not in rule:
                raise PolicyError(f"{source}: categories.{cat}.rules: each rule needs an 'id'")
            for i, existing in enumerate(rules):
                if existing.get("id") == rule["id"]:
                    rules[i] = rule
                    break
            else:
                rules.append(rule)
    return out


def load_policy(path: str | Path | None = None, inline: dict[str, Any] | None = None, *,
                use_default: bool = True) -> Policy:
    """The default policy, extended by a policy file and/or an inline mapping."""
    data: dict[str, Any] = {}
    source = "default policy"
    layers: list[tuple[dict[str, Any], str]] = []
    if path is not None:
        layers.append((_read_yaml(Path(path)), str(path)))
    if inline:
        layers.append((inline, "inline policy"))
    start_empty = not use_default or any(str(layer.get("extends", "default")).lower() == "none"
                                         for layer, _ in layers)
    if not start_empty:
        data = default_policy_data()
    for layer, src in layers:
        data = merge(data, layer, src)
        source = src
    return Policy(data, source)
