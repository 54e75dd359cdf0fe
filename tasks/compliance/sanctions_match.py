"""Matching names against a sanctions list: normalised names, a blocking index and a fuzzy score.

The matcher (documented threshold: MATCH_THRESHOLD = 88 out of 100)
    Names are normalised: transliterated to ASCII (unidecode, so "Müller" = "Muller"), lower-cased,
    punctuation removed, legal-form words (llc, ltd, inc, gmbh, ...) dropped, tokens sorted (so
    word order and the "LAST, First" comma do not matter). A pair's score is the best of:
      - the edit-distance similarity of the sorted token strings (rapidfuzz token_sort_ratio);
      - token_set_ratio, only when the names share at least two whole tokens (so a lone
        "John" never matches "SMITH, John");
      - query coverage: when the screened name has two or more tokens and every one of them is
        close (>= 80) to a distinct token of the listed name, the length-weighted mean of those
        similarities (catches a typo plus a missing middle name: "Vladmir Putin").
    A country differing from every country the list gives for the entry lowers the score by
    COUNTRY_MISMATCH_PENALTY and says so; a sanctions hit is a reason for a person to look, not proof.
    For speed, only candidates are scored: listed names with at least two tokens resembling two of
    the name's tokens (one for single-word names), where "resembling" means the same first three
    letters or the same sound skeleton (first letter + next two consonants after folding w/v, ph/f,
    c/k, y/j/i, z/s: "Wladimir" = "Vladimir", "Poutine" = "Putin"). A token misspelt both in its
    first three letters and in its skeleton ("Alrashid" for "Al Rashid") is missed.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain

from rapidfuzz import fuzz
from unidecode import unidecode

MATCH_THRESHOLD = 88.0
TOKEN_MATCH_MIN = 80.0
COUNTRY_MISMATCH_PENALTY = 5.0
LEGAL_FORMS = {
    "llc", "ltd", "limited", "inc", "incorporated", "corp", "corporation", "co", "company", "gmbh", "ag",
    "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "plc", "llp", "lp", "oy", "ab", "as", "kg", "pjsc",
    "ojsc", "cjsc", "jsc", "ooo", "zao", "oao", "fze", "fzco", "the", "of", "and",
}


@dataclass
class SdnEntry:
    ent_num: int
    name: str
    sdn_type: str = ""
    program: str = ""
    title: str = ""
    remarks: str = ""
    aliases: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)  # ISO alpha-2 codes (or plain names when unknown)

    def as_dict(self) -> dict:
        return {"ent_num": self.ent_num, "name": self.name, "type": self.sdn_type, "program": self.program,
                "aliases": self.aliases, "countries": self.countries}


@dataclass
class SanctionsMatch:
    entry: SdnEntry
    score: float
    reason: str
    matched_name: str = ""

    def as_dict(self) -> dict:
        return {**self.entry.as_dict(), "score": round(self.score, 1), "reason": self.reason,
                "matched_name": self.matched_name}


def normalize_tokens(name: str) -> list[str]:
    """ASCII, lower case, no punctuation, no legal-form words, sorted tokens."""
    text = unidecode(name or "").lower().replace("&", " ")
    text = re.sub(r"[^a-z0-9]+", " ", text.replace("'", ""))
    tokens = [t for t in text.split() if t not in LEGAL_FORMS]
    return sorted(tokens)


_FOLD = [("ph", "f"), ("w", "v"), ("ck", "k"), ("c", "k"), ("q", "k"), ("z", "s"), ("y", "i"), ("j", "i"),
         ("dh", "d"), ("kh", "h"), ("th", "t"), ("gh", "g")]


@functools.lru_cache(maxsize=200_000)
def _skeleton(token: str) -> str:
    """A coarse sound key: the first letter and the next two consonants, spelling variants folded
    ("Wladimir" = "Vladimir", "Muhammad" = "Mohamed", "Poutine" = "Putin")."""
    for a, b in _FOLD:
        token = token.replace(a, b)
    rest = "".join(ch for ch in token[1:] if ch not in "aeiou")
    return token[0] + rest[:2] if rest else token[:3]


def _token_keys(token: str) -> tuple[str, ...]:
    """A token's blocking keys: its first three letters and its sound skeleton."""
    prefix, skeleton = token[:3], "~" + _skeleton(token)
    return (prefix, skeleton)


def _blocking_keys(tokens: list[str]) -> set[str]:
    return {key for t in tokens if len(t) >= 2 for key in _token_keys(t)}


@functools.lru_cache(maxsize=4096)
def normalize_country(value: str | None) -> str:
    """An ISO 3166 code or a country name ("Russia", "Korea, North") -> its alpha-2 code, else the plain name."""
    value = (value or "").strip().strip(".")
    if not value or value == "-0-":
        return ""
    import pycountry  # on first use: importing it takes ~0.1 s, which every CLI and server start would pay

    plain = " ".join(re.sub(r"[^a-z ]+", " ", unidecode(value).lower()).split())
    special = {"korea north": "KP", "north korea": "KP", "korea south": "KR", "south korea": "KR",
               "russia": "RU", "iran": "IR", "syria": "SY", "burma": "MM", "vietnam": "VN", "venezuela": "VE",
               "bolivia": "BO", "tanzania": "TZ", "moldova": "MD", "laos": "LA", "united kingdom": "GB"}
    if plain in special:
        return special[plain]
    try:
        return pycountry.countries.lookup(value).alpha_2
    except LookupError:
        pass
    try:
        found = pycountry.countries.search_fuzzy(value)
        if len(found) == 1:
            return found[0].alpha_2
    except LookupError:
        pass
    return plain


@dataclass
class _Name:
    entry_index: int
    text: str
    tokens: list[str]
    key: str
    tokset: frozenset


class SdnList:
    """A parsed sanctions list with a token-prefix index for fast screening."""

    def __init__(self, entries: list[SdnEntry], *, checksum: str, list_date: str | None, source: str):
        self.entries = entries
        self.checksum = checksum
        self.list_date = list_date
        self.source = source
        self.names: list[_Name] = []
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, entry in enumerate(entries):
            for text in [entry.name, *entry.aliases]:
                tokens = normalize_tokens(text)
                if not tokens:
                    continue
                n = len(self.names)
                self.names.append(_Name(i, text, tokens, " ".join(tokens), frozenset(tokens)))
                for key in _blocking_keys(tokens):
                    self.index[key].append(n)
        self.single = [len(name.tokens) < 2 for name in self.names]  # listed names of one token
        self._similar: dict[str, tuple[int, ...]] = {}

    def similar_to(self, token: str):
        """Names with a token of the same prefix or skeleton as `token` (cached: names share tokens)."""
        found = self._similar.get(token)
        if found is None:
            a, b = (self.index.get(k, ()) for k in _token_keys(token))
            found = tuple(set(a).union(b)) if a and b else tuple(a or b)
            if len(self._similar) > 50_000:
                self._similar.clear()
            self._similar[token] = found
        return found

    def __len__(self) -> int:
        return len(self.entries)


def _score(q_tokens: list[str], q_key: str, q_set: frozenset, cand: _Name) -> tuple[float, str]:
    best, how = fuzz.ratio(q_key, cand.key), "same words in any order"
    if best >= 100:
        return 100.0, "exact name after normalisation"
    if len(q_set & cand.tokset) >= 2:
        s = fuzz.token_set_ratio(q_key, cand.key)
        if s > best:
            best, how = s, "all words of one name appear in the other"
    if len(q_tokens) >= 2 and len(q_tokens) <= len(cand.tokens):
        used: set[int] = set()
        total = weight = 0.0
        for tok in q_tokens:
            pick, pick_score = -1, 0.0
            for j, other in enumerate(cand.tokens):
                if j in used:
                    continue
                s = fuzz.ratio(tok, other)
                if s > pick_score:
                    pick, pick_score = j, s
            if pick_score < TOKEN_MATCH_MIN:
                total = 0.0
                break
            used.add(pick)
            total += pick_score * len(tok)
            weight += len(tok)
        if total and weight:
            s = total / weight
            if s > best:
                best, how = s, "every word close to a word of the listed name"
    return best, how



def screen(name: str, country: str | None, sdn_list: SdnList, *,
           threshold: float = MATCH_THRESHOLD) -> list[SanctionsMatch]:
    """Entries of `sdn_list` that `name` (in `country`, ISO code or name) may be; best first."""
    q_tokens = normalize_tokens(name)
    if not q_tokens:
        return []
    q_key = " ".join(q_tokens)
    q_set = frozenset(q_tokens)
    # Per query token, the listed names having a token with the same prefix or the same skeleton.
    per_token = [sdn_list.similar_to(tok) for tok in dict.fromkeys(t for t in q_tokens if len(t) >= 2)]
    if len(per_token) >= 2:
        # Candidates resemble at least two of the name's tokens; single-token listed names need one.
        counts = Counter(chain.from_iterable(per_token))
        candidates = [n for n, shared in counts.items() if shared >= 2 or sdn_list.single[n]]
    else:
        candidates = list(set(chain.from_iterable(per_token)))
    partner_country = normalize_country(country)
    best_by_entry: dict[int, SanctionsMatch] = {}
    for n in candidates:
        cand = sdn_list.names[n]
        score, how = _score(q_tokens, q_key, q_set, cand)
        if score < threshold - 0.01:
            continue
        entry = sdn_list.entries[cand.entry_index]
        reason = f"{how} ({score:.0f}/100 vs {cand.text!r})"
        if partner_country and entry.countries:
            if partner_country in entry.countries:
                reason += f"; country matches ({partner_country})"
            else:
                score -= COUNTRY_MISMATCH_PENALTY
                reason += f"; country differs (list: {', '.join(entry.countries)}; partner: {partner_country})"
                if score < threshold - 0.01:
                    continue
        prior = best_by_entry.get(cand.entry_index)
        if prior is None or score > prior.score:
            best_by_entry[cand.entry_index] = SanctionsMatch(entry, round(score, 1), reason, cand.text)
    return sorted(best_by_entry.values(), key=lambda m: (-m.score, m.entry.ent_num))
