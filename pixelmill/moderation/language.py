"""A cheap guess whether a prompt is written in English (the embedding model reads English only).

Three signals, no model: letters from a non-Latin script (after look-alike letters are mapped to Latin, so
``nаkеd`` with Cyrillic letters still reads as English; two words or more, and 30 % of the words, that keep
a letter of another script after that mapping count too: "голая" becomes "roлaя"), function words of other common languages
outnumbering English ones, and (with the model's vocabulary, for prompts with no function word at all:
"Folter eines Gefangenen, blutig") words the English model does not know that carry accented letters or
endings of other languages (-ung, -keit, -lich, -ig, -en, -ción, -zione...). Short noun-phrase prompts
("a red fox, 8k") count as English, and so do English tag lists with slang or names ("loli hentai",
"kawaii avocado sticker"): their unknown words carry no such mark.
"""

from __future__ import annotations

import re
import unicodedata

from . import normalize as nz

ENGLISH = frozenset("""a an the of in on with and at by for from to is are was his her their its this that who
while over under into as it be not no or but he she they we you i my your our them him has have out up
what when where which there here very just about after before near like""".split())

# Function words and a few frequent prompt nouns of other languages, none of them an English word.
FOREIGN = frozenset("""
le les des du un une et est sur avec dans pour par au aux ce cette ses son sa qui que sont pas homme femme
enfant fille garçon garcon mort sang nue nu plage chien
el los las del con por para una unos unas muy sus su es en niña nina niño nino chica chico mujer hombre
desnuda desnudo muerte sangre cuerpo playa perro gato
der das ein eine einen einer eines einem und ist mit auf im vom zum zur sind nicht ich sie wir ihr dem den des
frau mann mädchen madchen junge kinder nackt nackte nacktes blut tod leiche hund katze sich auch oder
als wie gegen nach bei aus über uber unter ohne zwischen
comme sans chez sous vers entre
como sobre sin entre hacia desde
sul sulla nel nei alla allo agli senza
sem pelo pela pelos pelas entre
il lo gli della delle dei nella con per sono una uno ragazza ragazzo donna uomo nuda nudo morte sangue
um uma os das dos na no com para menina menino mulher homem criança crianca nua morte sangue anos
het een van en op met voor zijn niet meisje jongen vrouw naakt
""".split())
SHARED = frozenset({"in"})
ENGLISH_CLASH = frozenset({"die", "de", "la", "en", "kind", "do", "son", "men", "pie"})
# endings of German, Spanish, Italian, Portuguese and French words; counted only on words the English model
# does not know (so "golden", "kitten" or "motivation" never count)
FOREIGN_ENDINGS = ("ung", "ungen", "keit", "heit", "lich", "liche", "lichen", "isch", "ische", "ig", "ige", "igen",
                   "en", "te", "ter", "tes", "ten", "cion", "ciones", "dade", "zione", "zioni", "mente", "ado",
                   "ada", "ados", "adas", "ito", "ita", "ata", "ato", "eux", "euse", "oire")
_LETTERS = re.compile(r"[^\W\d_]+")


def non_latin_share(text: str) -> float:
    letters = [ch for ch in nz.light(text) if ch.isalpha()]
    if not letters:
        return 0.0
    other = sum(1 for ch in letters if not ("a" <= ch <= "z") and
                not unicodedata.name(ch, "").startswith("LATIN"))
    return other / len(letters)


def non_latin_words(text: str) -> list[str]:
    """Words that still hold a letter of another script once look-alike letters are mapped to Latin: a
    homoglyph trick ("nаkеd") uses look-alikes only, a Russian or Greek word nearly always has others
    ("голая" -> "roлaя")."""
    out = []
    for word in nz.light(text).split():
        if any(ch.isalpha() and not ("a" <= ch <= "z") and not unicodedata.name(ch, "").startswith("LATIN")
               for ch in word):
            out.append(word)
    return out


def guess_non_english(text: str, vocabulary: frozenset[str] | set[str] | None = None) -> str | None:
    """A short reason when the text looks non-English, else None.

    ``vocabulary`` (optional): the English word list of the embedding model's tokenizer; with it, a prompt
    with one foreign function word, no English one and many unknown words also counts as non-English."""
    share = non_latin_share(text)
    if share > 0.3:
        return f"{share:.0%} of its letters are not Latin"
    others = non_latin_words(text)
    if len(others) >= 2 and len(others) >= 0.3 * len(text.split()):
        return f"{len(others)} words in another script ({', '.join(others[:3])})"
    words = nz.TOKEN.findall(nz.light(text))
    foreign = [w for w in words if w in FOREIGN and w not in ENGLISH_CLASH]
    # "in" is a word of German, Italian and Dutch too: next to a foreign word it is not a sign of English
    english = [w for w in words if w in ENGLISH and not (foreign and w in SHARED)]
    if len(foreign) >= 2 and len(foreign) > len(english):
        return "function words of another language (" + ", ".join(foreign[:4]) + ")"
    if vocabulary and not english:
        marked = _marked_unknown(text, vocabulary)
        long_words = [w for w in _LETTERS.findall(text.casefold()) if len(w) >= 4]
        if len(marked) >= 2 and len(marked) >= 0.4 * len(long_words):
            return "no English function word and words the English model does not know (" + \
                ", ".join(marked[:4]) + ")"
    if vocabulary and foreign and not english:
        long_words = [w for w in words if len(w) >= 3 and w.isalpha()]
        unknown = [w for w in long_words if not _known(w, vocabulary)]
        if long_words and len(unknown) / len(long_words) >= 0.3:
            return "a foreign function word and words the English model does not know (" + \
                ", ".join(list(dict.fromkeys(foreign + unknown))[:4]) + ")"
    return None


def _known(word: str, vocabulary) -> bool:
    """The English model knows the word, or its singular."""
    return word in vocabulary or word.rstrip("s") in vocabulary


def _marked_unknown(text: str, vocabulary) -> list[str]:
    """Words of four letters or more that the model does not know and that carry an accented Latin letter
    or an ending of another language."""
    out = []
    for w in _LETTERS.findall(text.casefold()):
        if len(w) < 4:
            continue
        if _known(nz.light(w), vocabulary):
            continue
        accented = any(ord(c) > 127 and unicodedata.name(c, "").startswith("LATIN") for c in w)
        if accented or w.endswith(FOREIGN_ENDINGS):
            out.append(w)
    return out
