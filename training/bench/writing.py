"""Writing preferences of simulated users: deterministic edits that a person could plausibly make.

Each preference answers two questions about a response to a context: `satisfied(context, text)` (the
user would keep it) and `apply(context, text)` (the user's edit). Both judge content as well as form,
because a user who only checks the format lets junk through (an empty answer, "- 1.\\n- 2.\\n…", a text
about something else all fit "at most three bullets"):

- content (`ContentCheck`): the response has at least a few content words, enough of them come from
  the source text it is about, and it does not repeat itself. When content fails, the user's edit
  throws the response away and rewrites it from the source (`reference_text`: its first sentences),
  then formats that — as a person would when the suggestion is useless;
- form: each preference's own rule (`format_ok`) and its edit (`format`).

`apply` leaves a satisfied response unchanged, so `apply(apply(x)) == apply(x)`, and its result
always satisfies the preference (the tests check both on every context).

Texts are handled as lines: an email's head (a subject line, a greeting) and tail (a sign-off and a
name) are kept apart from its body, so that a preference about sentences (brevity, a closing
question) looks at the body only.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.capture.cost import tokenize
from training.bench.contexts import as_context

# --- words -----------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves may might must shall can't cannot won't don't doesn't isn't
    aren't it's let's one two also however thus therefore well many much often used use using via
    within without upon whether either neither yet still even since though although
    hi hello dear hey greetings regards best kind warm thanks thank cheers sincerely colleague colleagues
    team email wanted want share sharing note quick look think know need let hope helps find read
    question questions attached below following text summary here please interesting
    """.split()
)

# American -> British spellings; inflections of -ize verbs are generated below.
_BRITISH_WORDS = {
    "color": "colour",
    "colors": "colours",
    "colored": "coloured",
    "coloring": "colouring",
    "behavior": "behaviour",
    "behaviors": "behaviours",
    "behavioral": "behavioural",
    "favorite": "favourite",
    "favorites": "favourites",
    "favor": "favour",
    "favors": "favours",
    "honor": "honour",
    "honors": "honours",
    "humor": "humour",
    "labor": "labour",
    "neighbor": "neighbour",
    "neighbors": "neighbours",
    "neighboring": "neighbouring",
    "rumor": "rumour",
    "flavor": "flavour",
    "harbor": "harbour",
    "vapor": "vapour",
    "endeavor": "endeavour",
    "center": "centre",
    "centers": "centres",
    "centered": "centred",
    "theater": "theatre",
    "theaters": "theatres",
    "fiber": "fibre",
    "fibers": "fibres",
    "liter": "litre",
    "liters": "litres",
    "caliber": "calibre",
    "defense": "defence",
    "offense": "offence",
    "catalog": "catalogue",
    "catalogs": "catalogues",
    "analog": "analogue",
    "gray": "grey",
    "traveled": "travelled",
    "traveling": "travelling",
    "traveler": "traveller",
    "canceled": "cancelled",
    "canceling": "cancelling",
    "labeled": "labelled",
    "labeling": "labelling",
    "modeled": "modelled",
    "modeling": "modelling",
    "signaled": "signalled",
    "signaling": "signalling",
    "fueled": "fuelled",
    "leveled": "levelled",
    "enrollment": "enrolment",
    "fulfill": "fulfil",
    "fulfills": "fulfils",
    "skeptical": "sceptical",
    "artifact": "artefact",
    "artifacts": "artefacts",
    "aluminum": "aluminium",
    "pediatric": "paediatric",
    "anemia": "anaemia",
    "estrogen": "oestrogen",
    "maneuver": "manoeuvre",
    "analyze": "analyse",
    "analyzes": "analyses",
    "analyzed": "analysed",
    "analyzing": "analysing",
    "catalyze": "catalyse",
    "paralyze": "paralyse",
}
_IZE_STEMS = """
organ real recogn optim minim maxim normal initial serial custom summar categor priorit util standard
emphas character apolog visual final special author synchron stabil general capital central
critic memor modern neutral popular random regular symbol vector token
""".split()
for _stem in _IZE_STEMS:
    for _am, _br in (
        ("ize", "ise"),
        ("izes", "ises"),
        ("ized", "ised"),
        ("izing", "ising"),
        ("ization", "isation"),
        ("izations", "isations"),
        ("izer", "iser"),
        ("izers", "isers"),
    ):
        _BRITISH_WORDS.setdefault(_stem + _am, _stem + _br)
_AMERICAN_WORDS = {b: a for a, b in _BRITISH_WORDS.items()}


def words(text: str) -> list[str]:
    """Alphabetic words (with inner apostrophes), in order."""
    return _WORD.findall(text)


@functools.lru_cache(maxsize=65536)
def _norm(word: str) -> str:
    """A crude stem shared by both sides of a comparison: lower case, American spelling, no suffix."""
    w = word.lower().replace("’", "'").removesuffix("'s")
    w = _AMERICAN_WORDS.get(w, w)
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> list[str]:
    """Normalised words of three or more letters that are not stop words (or email small talk)."""
    out = []
    for w in words(text):
        lw = w.lower().replace("’", "'")
        if len(lw) >= 3 and lw not in STOPWORDS:
            out.append(_norm(lw))
    return out


# --- sentences and lines ---------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs al fig figs dr mr mrs ms prof no eq cf approx st jr sr inc ltd co resp ca".split()
)
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")


def sentences(text: str) -> list[str]:
    """Sentences of one line or paragraph (not across lines)."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        nxt = text[m.end() : m.end() + 1]
        next_word = text[m.end() :].split(maxsplit=1)[0] if nxt else ""
        # Docstrings start sentences with lower-case identifiers ("buffered_input must be ...").
        if not nxt or not (nxt.isupper() or nxt.isdigit() or nxt in "\"'([`" or "_" in next_word):
            continue
        before = text[start : m.start()].split()
        last = before[-1].lower() if before else ""
        if m.group().startswith(".") and (last.rstrip(".") in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
            continue
        piece = text[start : m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_GREETING = re.compile(
    r"^(?:hi|hello|dear|hey|greetings|good\s+(?:morning|afternoon|evening))\b[^.?\n]{0,40}[,!:]?\s*$", re.I
)
_INLINE_GREETING = re.compile(
    r"^((?:hi|hello|dear|hey|good\s+(?:morning|afternoon|evening))\b[^,!.?\n]{0,30}[,!])\s+(\S.*)$", re.I
)
_SUBJECT = re.compile(r"^\s*subject\s*:", re.I)
_SIGNOFF = re.compile(
    r"^(?:best(?:\s+(?:regards|wishes))?|kind\s+regards|warm\s+regards|warmest\s+regards|regards|"
    r"many\s+thanks|thanks(?:\s+again)?|thank\s+you|cheers|sincerely|yours\s+(?:sincerely|truly)|"
    r"all\s+the\s+best)\s*[,.!]?(?:\s+[\w\[\]]+(?:\s+[\w\[\]]+){0,3})?\s*$",
    re.I,
)


def _is_name_line(line: str) -> bool:
    s = line.strip()
    return 0 < len(s.split()) <= 4 and not s.endswith((".", "?", "!", ":", ",")) and not _BULLET.match(s)


def split_envelope(text: str) -> tuple[list[str], list[str], list[str]]:
    """(head, body, tail) lines: subject and greeting lines; the rest; a sign-off and a name."""
    lines = text.strip().splitlines()
    head: list[str] = []
    i = 0
    while i < len(lines) and (not lines[i].strip() or _SUBJECT.match(lines[i]) or _GREETING.match(lines[i].strip())):
        if lines[i].strip():
            head.append(lines[i].strip())
        i += 1
    rest = lines[i:]
    j = len(rest)
    while j > 0 and not rest[j - 1].strip():
        j -= 1
    tail: list[str] = []
    if j > 0 and _SIGNOFF.match(rest[j - 1].strip()):
        tail = [rest[j - 1].strip()]
        j -= 1
    elif j > 1 and _is_name_line(rest[j - 1]) and _SIGNOFF.match(rest[j - 2].strip()):
        tail = [rest[j - 2].strip(), rest[j - 1].strip()]
        j -= 2
    body = rest[:j]
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return head, body, tail


def join_envelope(head: list[str], body: list[str], tail: list[str]) -> str:
    parts = [p for p in ("\n".join(head), "\n".join(body).strip(), "\n".join(tail)) if p]
    return re.sub(r"\n{3,}", "\n\n", "\n\n".join(parts)).strip()


def body_units(body: list[str]) -> list[str]:
    """Sentences of the body, bullet markers removed."""
    out = []
    for line in body:
        if line.strip():
            out.extend(sentences(_BULLET.sub("", line).strip()))
    return out


# --- content ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentCheck:
    """What a user checks before form: is there something, is it about the source, is it not a loop."""

    min_words: int = 3  # content words the response must have
    min_shared: int = 3  # distinct content words shared with the source (fewer if the source has fewer)
    min_share: float = 0.3  # share of the response's distinct content words found in the source
    ngram: int = 4  # a word n-gram ...
    ngram_times: int = 3  # ... seen this many times is a loop
    min_distinct: float = 0.35  # fewer distinct words than this share (12+ words) is a loop

    def problem(self, ctx: Mapping[str, Any], text: str) -> str | None:
        """None when the content is acceptable, else "empty", "repeats" or "off-topic"."""
        mine = content_words(text)
        if len(mine) < self.min_words:
            return "empty"
        src = str(ctx.get("source", ""))
        if repeats(text, src, self.ngram, self.ngram_times, self.min_distinct):
            return "repeats"
        source = _source_profile(src, self.ngram)[0]
        kinds = set(mine)
        shared = kinds & source
        if len(shared) < min(self.min_shared, len(source)) or len(shared) < self.min_share * len(kinds):
            return "off-topic"
        return None

    def ok(self, ctx: Mapping[str, Any], text: str) -> bool:
        return self.problem(ctx, text) is None


def _ngrams(text: str, n: int) -> Counter:
    toks = [t.lower() for t in tokenize(text) if t[0].isalnum()]
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def _sentence_counts(text: str) -> Counter:
    return Counter(
        key
        for line in text.splitlines()
        for u in sentences(_BULLET.sub("", line))
        if len((key := " ".join(w.lower() for w in words(u))).split()) >= 4
    )


@functools.lru_cache(maxsize=4096)
def _source_profile(source: str, n: int) -> tuple[frozenset[str], Counter, Counter, float]:
    """What a response is compared with: content words, n-grams, sentences, distinct-word share."""
    toks = [t.lower() for t in tokenize(source) if t[0].isalnum()]
    distinct = len(set(toks)) / len(toks) if toks else 1.0
    return frozenset(content_words(source)), _ngrams(source, n), _sentence_counts(source), distinct


def repeats(text: str, source: str = "", n: int = 4, times: int = 3, min_distinct: float = 0.35) -> bool:
    """The response loops: a word n-gram `times` times, a sentence of 4+ words twice, or too few
    distinct words (12+ words) — each only when the source itself does not repeat that much."""
    _, src_grams, src_sentences, src_distinct = _source_profile(source, n)
    grams = _ngrams(text, n)
    if any(c >= times and c > src_grams.get(g, 0) for g, c in grams.items()):
        return True
    toks = [t.lower() for t in tokenize(text) if t[0].isalnum()]
    if len(toks) >= 12 and len(set(toks)) < min(min_distinct, src_distinct) * len(toks):
        return True
    return any(c > 1 and c > src_sentences.get(u, 0) for u, c in _sentence_counts(text).items())


def reference_text(ctx: Mapping[str, Any], min_words: int = 25, max_sentences: int = 3) -> str:
    """The user's own rewrite when a response is useless: the source's first sentences (4+ words each)."""
    source = str(ctx.get("source", ""))
    picked: list[str] = []
    count = 0
    for para in re.split(r"\n\s*\n", source):
        para = " ".join(para.split())
        if para and para[-1] not in ".!?:;":
            para += "."  # a title line without a full stop
        for s in sentences(para):
            n = len(s.split())
            if n < 4:
                continue
            picked.append(s)
            count += n
            if count >= min_words or len(picked) >= max_sentences:
                return " ".join(picked)
    return " ".join(picked) if picked else " ".join(source.split()[:40])


# --- preferences -----------------------------------------------------------------------------------


class WritingPreference:
    """Content check plus one rule of form. Subclasses define `name`, `format_ok` and `format`."""

    name = "writing"

    def __init__(self, content: ContentCheck | None = None) -> None:
        self.content = content or ContentCheck()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def format_ok(self, ctx: Mapping[str, Any], text: str) -> bool:
        raise NotImplementedError

    def format(self, ctx: Mapping[str, Any], text: str) -> str:
        raise NotImplementedError

    def satisfied(self, context: str | Mapping[str, Any], text: str) -> bool:
        ctx = as_context(context)
        return self.content.ok(ctx, text) and self.format_ok(ctx, text)

    def apply(self, context: str | Mapping[str, Any], text: str) -> str:
        ctx = as_context(context)
        if self.satisfied(ctx, text):
            return text
        if self.content.ok(ctx, text):
            out = self.format(ctx, text)
            if self.content.ok(ctx, out) and self.format_ok(ctx, out):
                return out
        return self.format(ctx, reference_text(ctx))


def _shorten(unit: str, max_words: int) -> str:
    """Cut a sentence to `max_words` words, at a clause boundary when one leaves 6+ words."""
    ws = unit.split()
    if len(ws) <= max_words:
        return " ".join(ws)
    cut = ws[:max_words]
    for i in range(len(cut) - 1, max(4, 2 * max_words // 3 - 2), -1):
        if cut[i].endswith((",", ";", ":")):
            cut = cut[: i + 1]
            break
    text = " ".join(cut)
    if text.count("(") > text.count(")"):
        head = text[: text.rfind("(")].strip()
        text = head if len(head.split()) >= 4 else text.replace("(", "")
    ws = text.split()
    while len(ws) > 3 and ws[-1].lower().strip(",;:") in _DANGLING:
        ws.pop()
    return " ".join(ws).rstrip(",;:-–—")


_DANGLING = frozenset(
    "the a an of to and or in on for with by as at from that which is are was were its their this these".split()
)


def _n_words(text: str) -> int:
    return sum(1 for w in text.split() if any(ch.isalnum() for ch in w))


class Bullets(WritingPreference):
    """At most `max_bullets` bullets ("- ") of 2 to `max_words` words, and nothing else."""

    def __init__(self, max_bullets: int = 3, max_words: int = 12, content: ContentCheck | None = None) -> None:
        super().__init__(content)
        self.max_bullets = max_bullets
        self.max_words = max_words
        self.name = f"bullets-{max_bullets}x{max_words}"

    def format_ok(self, ctx, text):
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if not 1 <= len(lines) <= self.max_bullets:
            return False
        for line in lines:
            m = re.match(r"^[-*•] (\S.*)$", line.strip())
            if not m or not 2 <= _n_words(m.group(1)) <= self.max_words:
                return False
        return True

    def format(self, ctx, text):
        _, body, _ = split_envelope(text)
        units = [u for u in body_units(body) if _n_words(u) >= 3]
        picked = [_shorten(u, self.max_words) for u in units[: self.max_bullets]]
        return "\n".join(f"- {u}" for u in picked if _n_words(u) >= 2)


class Brevity(WritingPreference):
    """At most `max_sentences` sentences in the body (a greeting and a sign-off do not count)."""

    def __init__(self, max_sentences: int = 3, content: ContentCheck | None = None) -> None:
        super().__init__(content)
        self.max_sentences = max_sentences
        self.name = f"brevity-{max_sentences}"

    def format_ok(self, ctx, text):
        _, body, _ = split_envelope(text)
        return 1 <= len(body_units(body)) <= self.max_sentences

    def format(self, ctx, text):
        head, body, tail = split_envelope(text)
        kept: list[str] = []
        budget = self.max_sentences
        for line in body:
            if budget <= 0:
                break
            if not line.strip():
                kept.append("")
                continue
            m = _BULLET.match(line)
            marker = m.group(0).strip() + " " if m else ""
            parts = sentences(_BULLET.sub("", line).strip())
            kept.append(marker + " ".join(parts[:budget]))
            budget -= len(parts[:budget])
        return join_envelope(head, kept, tail)


_CLOSING = re.compile(
    r"^(?:i\s+)?hope\s+(?:this|that|it|you)\b|^(?:please\s+)?let\s+me\s+know\b|^feel\s+free\b|"
    r"^happy\s+to\s+help\b|^thanks?\s+(?:you\s+)?for\s+reading\b|^if\s+you\s+have\s+any\s+(?:\w+\s+)?questions\b|"
    r"^good\s+luck\b|^don'?t\s+hesitate\b|^do\s+not\s+hesitate\b",
    re.I,
)
_LEADIN = re.compile(
    r"^(?:(?:in\s+conclusion|in\s+summary|to\s+summari[sz]e|to\s+sum\s+up|overall|in\s+short|all\s+in\s+all)"
    r"\s*[,:]\s*|(?:sure|certainly|of\s+course|absolutely)\s*[,!.:]\s*|"
    r"here(?:'s|’s|\s+is)\s+(?:a|an|the|my|your)\s+[^:.!?]{0,40}?(?:summary|email|version|overview)\s*[:.!]\s*)",
    re.I,
)


class NoClosing(WritingPreference):
    """No chatty closing line ("Hope this helps", "Let me know…") and no "In conclusion,"/"Sure!" lead-in."""

    name = "no-closing"

    @staticmethod
    def _clean(sentence: str) -> str:
        if _CLOSING.match(sentence):
            return ""
        s = sentence
        while True:
            m = _LEADIN.match(s)
            if not m:
                return s
            s = s[m.end() :]
            s = s[:1].upper() + s[1:]

    def format_ok(self, ctx, text):
        return all(self._clean(u) == u for line in text.splitlines() for u in sentences(_BULLET.sub("", line)))

    def format(self, ctx, text):
        out = []
        for line in text.strip().splitlines():
            if not line.strip():
                out.append("")
                continue
            m = _BULLET.match(line)
            marker = m.group(0) if m else ""
            kept = [c for c in (self._clean(u) for u in sentences(line[len(marker) :])) if c]
            if kept:
                out.append(marker + " ".join(kept))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


class Email(WritingPreference):
    """A greeting line first ("Hi,") and a sign-off last ("Best regards,"), with a body between."""

    name = "email"

    def __init__(self, greeting: str = "Hi,", signoff: str = "Best regards,", content: ContentCheck | None = None):
        super().__init__(content)
        self.greeting = greeting
        self.signoff = signoff

    def format_ok(self, ctx, text):
        head, body, tail = split_envelope(text)
        return any(_GREETING.match(h) for h in head) and bool(tail) and any(line.strip() for line in body)

    def format(self, ctx, text):
        head, body, tail = split_envelope(text)
        if not any(_GREETING.match(h) for h in head):
            m = _INLINE_GREETING.match(body[0].strip()) if body else None
            if m:
                head = [*head, m.group(1)]
                body = [m.group(2), *body[1:]]
            else:
                head = [*head, self.greeting]
        if not tail:
            tail = [self.signoff]
        return join_envelope(head, body, tail)


_YOU = re.compile(r"\b(?:you|your|yours|yourself|yourselves)\b", re.I)
_SECOND_PERSON = [
    (re.compile(r"\bthe\s+(?:user|reader|caller|programmer|developer)(?:'s|’s)", re.I), "your"),
    (re.compile(r"\bthe\s+(?:users|readers|callers|programmers|developers)(?:'|’)", re.I), "your"),
    (re.compile(r"\bthe\s+(?:users?|readers?|callers?|programmers?|developers?)\b", re.I), "you"),
    (re.compile(r"\bone\s+(can|may|must|should|might|could|will|would)\b", re.I), r"you \1"),
]
_AGREEMENT = [
    (re.compile(r"\b(you)\s+has\b", re.I), r"\1 have"),
    (re.compile(r"\b(you)\s+is\b", re.I), r"\1 are"),
    (re.compile(r"\b(you)\s+was\b", re.I), r"\1 were"),
    (re.compile(r"\b(you)\s+does\b", re.I), r"\1 do"),
]


def _sentence_case(text: str) -> str:
    """Capitalise a "you"/"your" that now starts a sentence."""
    return re.sub(r"(^|[.!?]\s+|^[-*•]\s+)(you|your)\b", lambda m: m.group(1) + m.group(2).capitalize(), text)


class SecondPerson(WritingPreference):
    """The text speaks to the reader ("you"): "the user" becomes "you"; failing that, a line says so."""

    name = "second-person"
    opener = "Here is what you need to know."

    def format_ok(self, ctx, text):
        _, body, _ = split_envelope(text)
        return bool(_YOU.search("\n".join(body)))

    def format(self, ctx, text):
        head, body, tail = split_envelope(text)
        new = []
        for line in body:
            for pattern, repl in [*_SECOND_PERSON, *_AGREEMENT]:
                line = pattern.sub(repl, line)
            new.append(_sentence_case(line))
        if not _YOU.search("\n".join(new)):
            if new and not _BULLET.match(new[0]):
                new[0] = f"{self.opener} {new[0].strip()}"
            else:
                new = [self.opener, *new]
        return join_envelope(head, new, tail)


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _word_map_pattern(words_: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted((re.escape(w) for w in words_), key=len, reverse=True))
    return re.compile(rf"(?<![\w`_.\-])({alternatives})(?![\w`_(\-])", re.I)


class BritishSpelling(WritingPreference):
    """British spelling for common words (colour, organise, centre, behaviour, travelled…)."""

    name = "british-spelling"
    words_map = _BRITISH_WORDS
    _pattern = _word_map_pattern(list(_BRITISH_WORDS))

    def format_ok(self, ctx, text):
        return not self._pattern.search(text)

    def format(self, ctx, text):
        return self._pattern.sub(lambda m: _match_case(m.group(1), self.words_map[m.group(1).lower()]), text).strip()


_CONTRACTIONS = {
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "can't": "cannot",
    "won't": "will not",
    "shan't": "shall not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "weren't": "were not",
    "haven't": "have not",
    "hasn't": "has not",
    "hadn't": "had not",
    "wouldn't": "would not",
    "shouldn't": "should not",
    "couldn't": "could not",
    "mustn't": "must not",
    "needn't": "need not",
    "mightn't": "might not",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "here's": "here is",
    "what's": "what is",
    "who's": "who is",
    "where's": "where is",
    "how's": "how is",
    "he's": "he is",
    "she's": "she is",
    "let's": "let us",
    "i'm": "I am",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "i've": "I have",
    "you've": "you have",
    "we've": "we have",
    "they've": "they have",
    "i'll": "I will",
    "you'll": "you will",
    "we'll": "we will",
    "they'll": "they will",
    "it'll": "it will",
    "that'll": "that will",
    "i'd": "I would",
    "you'd": "you would",
    "we'd": "we would",
    "they'd": "they would",
}


class NoContractions(WritingPreference):
    """Words in full: "don't" becomes "do not", "it's" becomes "it is"."""

    name = "no-contractions"
    _pattern = re.compile(
        r"(?<![\w'’])("
        + "|".join(sorted((re.escape(k).replace("'", "['’]") for k in _CONTRACTIONS), key=len, reverse=True))
        + r")(?![\w'’])",
        re.I,
    )

    def format_ok(self, ctx, text):
        return not self._pattern.search(text)

    def format(self, ctx, text):
        def repl(m: re.Match[str]) -> str:
            word = m.group(1)
            full = _CONTRACTIONS[word.lower().replace("’", "'")]
            if full.startswith("I "):
                return full.upper() if word.isupper() else full
            return _match_case(word, full)

        return self._pattern.sub(repl, text).strip()


class QuestionAtEnd(WritingPreference):
    """The body ends with a question to the reader (before any sign-off)."""

    name = "question-at-end"
    question = "What do you think?"

    def format_ok(self, ctx, text):
        _, body, _ = split_envelope(text)
        units = body_units(body)
        return bool(units) and units[-1].rstrip("\"')]").endswith("?")

    def format(self, ctx, text):
        head, body, tail = split_envelope(text)
        return join_envelope(head, [*body, "", self.question], tail)


WRITING_PREFERENCES = {
    cls.__name__: cls
    for cls in (Bullets, Brevity, NoClosing, Email, SecondPerson, BritishSpelling, NoContractions, QuestionAtEnd)
}
