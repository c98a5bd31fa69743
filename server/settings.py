"""The server's settings: what the editor sends under the `redline` section, validated in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace

log = logging.getLogger(__name__)

DEFAULT_LANGUAGES = (
    "markdown",
    "plaintext",
    "python",
    "javascript",
    "typescript",
    "javascriptreact",
    "typescriptreact",
)


@dataclass(frozen=True)
class Settings:
    model_path: str = ""  # local Hugging Face model folder; "" = the embedded default model
    enabled: bool = True  # suggestions on/off (pause is a separate, runtime state)
    languages: tuple[str, ...] = DEFAULT_LANGUAGES  # language ids to suggest in; ("*",) = all
    max_suggestion_tokens: int = 48  # upper bound on generated tokens per suggestion
    max_document_chars: int = 4_000_000  # larger documents get no suggestions (and a log line)
    capture: bool = True  # record what becomes of each suggestion (for learning)
    settle_seconds: float = 20.0  # an accepted span with no edit inside it for this long is final
    auto_retrain_edits: int = 50  # retrain after this many new settled edits while idle; 0 = never
    auto_retrain_idle_seconds: float = 120.0  # "idle": no suggestion requested for this long
    trainer_args: tuple[str, ...] = ()  # extra options for `python -m training train` (advanced)
    retention_days: float = 365.0  # older records are deleted at start-up; 0 keeps everything
    exclude: tuple[str, ...] = ()  # globs added to the built-in exclusions (.env*, *.pem, *secret*...)
    extra: dict = field(default_factory=dict, compare=False)  # settings this version ignores

    def language_enabled(self, language_id: str) -> bool:
        return "*" in self.languages or language_id in self.languages

    def merged(self, raw: object) -> "Settings":
        """These settings updated from the editor's camelCase dict; bad values are logged and ignored."""
        if not isinstance(raw, dict):
            return self
        if isinstance(raw.get("redline"), dict):  # didChangeConfiguration may nest the section
            raw = raw["redline"]
        known = {_camel(f.name): f.name for f in fields(self) if f.name != "extra"}
        changes: dict = {}
        extra = dict(self.extra)
        for key, value in raw.items():
            name = known.get(key)
            if name is None:
                extra[key] = value
                continue
            try:
                changes[name] = _coerce(name, value)
            except (TypeError, ValueError) as exc:
                log.warning("Ignoring setting redline.%s=%r: %s", key, value, exc)
        return replace(self, extra=extra, **changes)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _coerce(name: str, value: object) -> object:
    if name == "model_path":
        if value is None:
            return ""
        if not isinstance(value, str):
            raise TypeError("expected a folder path")
        return value.strip()
    if name in ("enabled", "capture"):
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if name == "retention_days":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("expected a number of days (0 keeps everything)")
        return float(value)
    if name == "settle_seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 3600:
            raise ValueError("expected seconds between 1 and 3600")
        return float(value)
    if name in ("languages", "exclude", "trainer_args"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TypeError("expected a list of strings")
        return tuple(value)
    if name == "auto_retrain_edits":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("expected a number of edits (0 turns automatic retraining off)")
        return int(value)
    if name == "auto_retrain_idle_seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("expected seconds")
        return float(value)
    if name in ("max_suggestion_tokens", "max_document_chars"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) < 1:
            raise ValueError("expected a positive number")
        return min(int(value), 512) if name == "max_suggestion_tokens" else int(value)
    return value
