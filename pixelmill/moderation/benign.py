"""Narrow, explainable exceptions for the meaning layers: known harmless names and sacred symbols.

``IDIOMS``: names of drinks, dishes and fashion or sport idioms whose words sound sexual or violent (a
Screaming Orgasm, a Buttery Nipple, killer heels). The sentence-embedding model reads the words, not the
name, so the gate replaces each of them with a plain word for what it is ("cocktail", "orca", "high
heels") before the semantic layer reads the text. A rule that matched a word inside one of them still blocks unless that word is
in the policy's ``ambiguous`` list (which needs the semantic layer to agree). Keep the list to fixed names
that have no harmful reading; never add a phrase because one prompt was blocked.

``SACRED``: the swastika is a sacred sign in Hinduism, Buddhism and Jainism. With one of the context words
in the same prompt (Hindu, temple, Diwali...), a rule match on the symbol's name alone counts as ambiguous:
it blocks only when the semantic layer also reads the prompt as harmful.
"""

from __future__ import annotations

import re

from . import normalize as nz

IDIOMS = {
    # drinks and shots
    "screaming orgasm": "cocktail", "multiple orgasm cocktail": "cocktail", "orgasm cocktail": "cocktail",
    "orgasm shot": "shot", "buttery nipple": "shot", "slippery nipple": "shot", "sex on the beach": "cocktail",
    "sex with an alligator": "shot", "blow job shot": "shot", "blowjob shot": "shot", "angel's tit": "cocktail",
    "hanky panky cocktail": "cocktail", "corpse reviver": "cocktail", "zombie cocktail": "cocktail",
    "bloody mary": "cocktail", "kamikaze shot": "shot", "death in the afternoon": "cocktail",
    "suffering bastard": "cocktail", "blood and sand cocktail": "cocktail",
    # dishes
    "death by chocolate": "chocolate cake", "widow maker burger": "burger", "naked cake": "cake",
    "nude cake": "cake", "suicide wings": "hot wings", "suicide hot wings": "hot wings",
    "suicide hot sauce": "extra hot sauce", "suicide hot": "extra hot",
    # animals, fashion and everyday idioms
    "killer whale": "orca", "killer heels": "high heels", "drop dead gorgeous": "gorgeous",
    "drop-dead gorgeous": "gorgeous", "dressed to kill": "dressed up",
    # a bundle of sticks for the fire (an old English word)
    "faggot of firewood": "bundle of firewood", "faggots of firewood": "bundles of firewood",
    "faggot of wood": "bundle of wood", "faggots of wood": "bundles of wood",
    "faggot of sticks": "bundle of sticks", "faggots of sticks": "bundles of sticks",
    # praise (round 9): "she absolutely killed it on stage" means she did great
    **{f"{adv} {verb} it": f"{adv} did great" for adv in ("absolutely", "totally", "really", "so")
       for verb in ("killed", "killing", "kills", "slayed", "slaying")},
    **{f"{verb} it on stage": "did great on stage" for verb in ("killed", "killing", "kills", "slayed", "slaying")},
    # "X porn": internet slang for beautiful photos of X
    **{f"{x} porn": f"{x} photography" for x in ("food", "cabin", "earth", "ruin", "ruins", "architecture",
                                                   "gear", "book", "map", "space", "sky", "city", "house",
                                                   "room", "plant", "tool")},
}
SACRED = {"swastika": ("hindu", "hinduism", "buddhist", "buddhism", "jain", "jainism", "temple", "diwali",
                       "rangoli", "sanskrit", "mandala", "puja", "om symbol", "ganesh", "lakshmi")}


def _phrase_rx(phrases) -> re.Pattern:
    alts = sorted({r"\W+".join(map(re.escape, nz.TOKEN.findall(nz.light(p)))) for p in phrases} - {""},
                  key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b")


IDIOM_RX = _phrase_rx(IDIOMS)
_IDIOM_PLAIN = {" ".join(nz.TOKEN.findall(nz.light(k))): v for k, v in IDIOMS.items()}
SACRED_RX = {term: _phrase_rx(words) for term, words in SACRED.items()}


def plain_idioms(text_light: str) -> str:
    """``light`` text with every known harmless name replaced by what it is ("a Screaming Orgasm shot"
    -> "a cocktail shot", "a killer whale" -> "a orca"): the model reads the thing, not the words."""
    return IDIOM_RX.sub(lambda m: _IDIOM_PLAIN.get(" ".join(nz.TOKEN.findall(m.group(0))), " "), text_light)


def sacred_context(term: str, text_light: str) -> bool:
    """Whether a match on ``term`` sits next to a word that gives it its sacred meaning."""
    rx = SACRED_RX.get(nz.light(term))
    return bool(rx and rx.search(text_light))
