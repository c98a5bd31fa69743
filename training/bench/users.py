"""Simulated users in the PRELUDE protocol (Gao et al. 2024), for learning from edits offline.

Each source of contexts has a latent preference: a few rules, each a deterministic edit a person could
plausibly make (`training.bench.writing`, `training.bench.codestyle`). Given a context and the
model's response, the user first checks whether the response already satisfies its preference — then
it keeps it unchanged (cost 0) — and otherwise edits it until it does. No language model can play the
user offline; these rules are the stand-in.

A user is anything with `edit(context, response) -> str` (`UserLike`). `context` is the context dict
from `training.bench.contexts` (best: the users judge content against its `source` and fall back on
its reference solution) or the prompt string, which is looked up among the contexts loaded so far.

- `User(preferences, mode, seed)`: `preferences` is a list of preferences, or a mapping from a
  context's `source_name` (or `task`, or "*") to such a list — the latent preference per source.
  A "strong" user enforces every preference of the source; a "weak" user, each time, a random
  non-empty subset of them (each kept with probability `keep`), from its own seeded generator — an
  incomplete edit, as a hurried person makes. Every preference checks content first, so junk is
  rewritten by weak users too.
- `DriftingUser(before, after, switch_after)`: the preference changes after `switch_after` edits.
- `SETTINGS`, `make_user(name, seed)`: named settings ("writing-summary-strong", ...), each with the
  context set it is meant for (`Setting.contexts`, a `load_contexts` name).
- `load_user(spec)`: a setting's name, or "module:attr" for a user written elsewhere
  (`redline bench --user module:attr`); a class or factory is called without arguments.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from server.capture.cost import word_cost
from training.bench.codestyle import (
    CodeContent,
    Docstring,
    EarlyReturns,
    Formatter,
    FStrings,
    PassesTests,
    Pep8Names,
    TypeHints,
)
from training.bench.contexts import as_context
from training.bench.writing import (
    Brevity,
    BritishSpelling,
    Bullets,
    ContentCheck,
    Email,
    NoClosing,
    NoContractions,
    QuestionAtEnd,
    SecondPerson,
)

__all__ = [
    "Preference",
    "UserLike",
    "User",
    "DriftingUser",
    "EditResult",
    "Setting",
    "SETTINGS",
    "make_user",
    "load_user",
    # preferences, re-exported
    "Bullets",
    "Brevity",
    "NoClosing",
    "Email",
    "SecondPerson",
    "BritishSpelling",
    "NoContractions",
    "QuestionAtEnd",
    "ContentCheck",
    "Pep8Names",
    "TypeHints",
    "Docstring",
    "FStrings",
    "EarlyReturns",
    "Formatter",
    "PassesTests",
    "CodeContent",
]

Context = str | Mapping[str, Any]


@runtime_checkable
class UserLike(Protocol):
    """What the harness needs of a user."""

    def edit(self, context: Context, response: str) -> str: ...


@runtime_checkable
class Preference(Protocol):
    name: str

    def satisfied(self, context: Context, text: str) -> bool: ...

    def apply(self, context: Context, text: str) -> str: ...


@dataclass
class EditResult:
    text: str  # y′, the user's settled text
    cost: float  # word-level edit cost of the response against y′ (the paper's c)
    active: list[str]  # the preferences enforced this time
    applied: list[str]  # those that changed the text
    content: str | None = None  # the first content problem found in the response, if any


PreferenceSet = Sequence[Preference] | Mapping[str, Sequence[Preference]]


class User:
    """A simulated user: enforces its latent preference for the context's source on each response."""

    max_rounds = 4  # passes over the preferences until none has anything left to change

    def __init__(
        self,
        preferences: PreferenceSet,
        mode: str = "strong",
        seed: int | None = 0,
        rng: random.Random | None = None,
        keep: float = 0.5,
        name: str = "",
    ) -> None:
        if mode not in ("strong", "weak"):
            raise ValueError(f"mode must be 'strong' or 'weak', not {mode!r}")
        self.preferences: dict[str, list[Preference]] = (
            {k: list(v) for k, v in preferences.items()}
            if isinstance(preferences, Mapping)
            else {"*": list(preferences)}
        )
        if not any(self.preferences.values()):
            raise ValueError("a user needs at least one preference")
        self.mode = mode
        self.rng = rng or random.Random(seed)
        self.keep = keep
        self.name = name
        self.calls = 0

    def __repr__(self) -> str:
        prefs = {k: [p.name for p in v] for k, v in self.preferences.items()}
        return f"User({self.name or prefs}, mode={self.mode!r})"

    def preferences_for(self, ctx: Mapping[str, Any]) -> list[Preference]:
        """The latent preference of the context's source: by `source_name`, then `task`, then "*"."""
        for key in (ctx.get("source_name"), ctx.get("task"), "*"):
            if key in self.preferences:
                return self.preferences[key]
        return next(iter(self.preferences.values()))

    def active(self, ctx: Mapping[str, Any]) -> list[Preference]:
        prefs = self.preferences_for(ctx)
        if self.mode == "strong" or len(prefs) <= 1:
            return list(prefs)
        picked = [p for p in prefs if self.rng.random() < self.keep]
        return picked or [self.rng.choice(prefs)]

    def explain(self, context: Context, response: str) -> EditResult:
        """The edit with what led to it."""
        ctx = as_context(context)
        self.calls += 1
        active = self.active(ctx)
        names = [p.name for p in active]
        content = next((p.content.problem(ctx, response) for p in active[:1] if hasattr(p, "content")), None)
        if all(p.satisfied(ctx, response) for p in active):
            return EditResult(response, 0.0, names, [], content)
        text = response
        applied: list[str] = []
        for _ in range(self.max_rounds):
            changed = False
            for p in active:
                if not p.satisfied(ctx, text):
                    new = p.apply(ctx, text)
                    if new != text:
                        changed = True
                        text = new
                        if p.name not in applied:
                            applied.append(p.name)
            if not changed:
                break
        return EditResult(text, word_cost(response, text), names, applied, content)

    def edit(self, context: Context, response: str) -> str:
        return self.explain(context, response).text

    def satisfied(self, context: Context, response: str) -> bool:
        """Whether every preference of the source holds (all of them, whatever the mode)."""
        ctx = as_context(context)
        return all(p.satisfied(ctx, response) for p in self.preferences_for(ctx))


class DriftingUser:
    """A user whose preference changes: `before` for the first `switch_after` edits, then `after`."""

    def __init__(self, before: UserLike, after: UserLike, switch_after: int, name: str = "") -> None:
        self.before = before
        self.after = after
        self.switch_after = switch_after
        self.calls = 0
        self.name = name

    @property
    def current(self) -> UserLike:
        return self.before if self.calls < self.switch_after else self.after

    def explain(self, context: Context, response: str) -> EditResult:
        user = self.current
        self.calls += 1
        if isinstance(user, (User, DriftingUser)):
            return user.explain(context, response)
        text = user.edit(context, response)
        return EditResult(text, word_cost(response, text), [], [], None)

    def edit(self, context: Context, response: str) -> str:
        return self.explain(context, response).text

    def __repr__(self) -> str:
        return f"DriftingUser({self.before!r} -> {self.after!r} after {self.switch_after})"


# --- named settings ------------------------------------------------------------------------------


def _summary_prefs() -> dict[str, list[Preference]]:
    bullets = [Bullets(3, 12), NoClosing()]
    return {
        "iterater": bullets,  # arXiv abstracts, Wikipedia, news: three short bullets, no chatter
        "stdlib": [Brevity(2), BritishSpelling(), NoClosing()],  # docs: two sentences, British spelling
        "*": bullets,
    }


def _summary_prefs_later() -> dict[str, list[Preference]]:
    brief = [Brevity(2), SecondPerson()]
    return {"iterater": brief, "stdlib": [Bullets(3, 12), NoClosing()], "*": brief}


def _email_prefs() -> dict[str, list[Preference]]:
    research = [Email(), NoContractions(), QuestionAtEnd()]
    return {
        "iterater": research,  # about papers and news: formal, ends by asking the colleague
        "stdlib": [Email(), SecondPerson(), BritishSpelling()],  # about library docs: "you", British
        "*": research,
    }


def _code_style_prefs(tool: str = "ruff") -> list[Preference]:
    return [Pep8Names(), FStrings(), EarlyReturns(), TypeHints(), Docstring(), Formatter(tool)]


@dataclass(frozen=True)
class Setting:
    name: str
    contexts: str  # the `training.bench.contexts.load_contexts` set it is meant for
    description: str
    factory: Callable[..., UserLike] = field(repr=False)

    def make(self, seed: int = 0, **kwargs: Any) -> UserLike:
        return self.factory(seed=seed, **kwargs)


def _drift(before: Callable[[], PreferenceSet], after: Callable[[], PreferenceSet], name: str):
    def make(seed: int = 0, switch_after: int = 100, mode: str = "strong") -> UserLike:
        return DriftingUser(
            User(before(), mode, seed, name=f"{name}:before"),
            User(after(), mode, seed + 1, name=f"{name}:after"),
            switch_after,
            name=name,
        )

    return make


def _setting(name: str, contexts: str, description: str, prefs: Callable[[], PreferenceSet], mode: str) -> Setting:
    def make(seed: int = 0, **kwargs: Any) -> UserLike:
        return User(prefs(), kwargs.pop("mode", mode), seed, name=name, **kwargs)

    return Setting(name, contexts, description, make)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        _setting(
            "writing-summary-strong",
            "summary",
            "summaries: 3 bullets of 12 words, no chatter (papers, news); 2 sentences, British (docs)",
            _summary_prefs,
            "strong",
        ),
        _setting(
            "writing-summary-weak",
            "summary",
            "the same preferences, a random part enforced each time",
            _summary_prefs,
            "weak",
        ),
        _setting(
            "writing-email-strong",
            "email",
            "emails: greeting and sign-off, no contractions, a closing question (papers, news); "
            "greeting and sign-off, second person, British (docs)",
            _email_prefs,
            "strong",
        ),
        _setting(
            "writing-email-weak",
            "email",
            "the same preferences, a random part enforced each time",
            _email_prefs,
            "weak",
        ),
        Setting(
            "writing-summary-drift",
            "summary",
            "writing-summary-strong, then after `switch_after` edits (default 100): papers and news in 2 "
            "sentences speaking to the reader, docs in bullets",
            _drift(_summary_prefs, _summary_prefs_later, "writing-summary-drift"),
        ),
        _setting(
            "code-style-strong",
            "humaneval",
            "code: PEP 8 names, f-strings, no else after return, type hints, docstrings, ruff format",
            _code_style_prefs,
            "strong",
        ),
        _setting(
            "code-style-weak",
            "humaneval",
            "the same preferences, a random part enforced each time",
            _code_style_prefs,
            "weak",
        ),
        _setting(
            "code-format-ruff",
            "humaneval",
            "code: only `ruff format` (a formatter as the user)",
            lambda: [Formatter("ruff")],
            "strong",
        ),
        _setting(
            "code-format-black",
            "humaneval",
            "code: only `black` (a formatter as the user)",
            lambda: [Formatter("black")],
            "strong",
        ),
        _setting(
            "code-correct-strong",
            "humaneval",
            "code: the tests must pass (else the reference solution), PEP 8 names, no else after return, ruff format",
            lambda: [PassesTests(), Pep8Names(), EarlyReturns(), Formatter("ruff")],
            "strong",
        ),
        Setting(
            "code-style-drift",
            "humaneval",
            "ruff format with PEP 8 names and early returns, then after `switch_after` edits black with "
            "f-strings, type hints and docstrings",
            _drift(
                lambda: [Pep8Names(), EarlyReturns(), Formatter("ruff")],
                lambda: [FStrings(), TypeHints(), Docstring(), Formatter("black")],
                "code-style-drift",
            ),
        ),
    )
}


def make_user(name: str, seed: int = 0, **kwargs: Any) -> UserLike:
    """A user of a named setting (`SETTINGS`); kwargs go to its factory (`switch_after`, `keep`...)."""
    try:
        setting = SETTINGS[name]
    except KeyError:
        raise KeyError(f"unknown user setting {name!r}; known: {', '.join(SETTINGS)}") from None
    return setting.make(seed, **kwargs)


def load_user(spec: str, seed: int = 0) -> UserLike:
    """A setting's name, or "module:attr" (attr may be dotted): an object with `edit`, or a class or
    factory that makes one when called without arguments."""
    if spec in SETTINGS:
        return make_user(spec, seed)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is neither a user setting ({', '.join(SETTINGS)}) nor 'module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, type) or (not hasattr(obj, "edit") and callable(obj)):
        obj = obj()
    if not callable(getattr(obj, "edit", None)):
        raise TypeError(f"{spec} is not a user: it has no edit(context, response) method")
    return obj
