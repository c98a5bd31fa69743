"""What Redline must never read or keep: excluded files, and secrets inside the text it does keep.

Exclusions. `is_excluded(uri_or_path)` matches a document against glob patterns (DEFAULT_EXCLUDES plus
the user's own), the way .gitignore does:

- A `file:` URI is turned into its path first (percent-decoded); any other URI (`untitled:`,
  `vscode-notebook-cell:` ...) is matched by its path part. Backslashes count as `/`.
- A pattern without `/` is matched against every component of the path, folders included, so `.env*`
  excludes `/p/.env.local` and `*secret*` excludes everything under `/p/secrets/`.
- A pattern with `/` is matched against consecutive components anywhere in the path (a leading `/`
  anchors it at the root); `**` spans any number of folders; a match on a folder excludes what is in it.
- `*` and `?` never cross a `/`. Matching ignores case: a stricter match is the safe side for files
  on case-insensitive file systems.

Redaction. `redact(text)` replaces every secret it finds with `«redacted:KIND»`, keeping the text
around it (for an assignment, the key and the quotes stay: `password = "«redacted:password»"`).
Detectors, in order of precedence where they overlap:

- private key blocks (`-----BEGIN ... PRIVATE KEY-----` to its END line, or to the end of the text
  when the END line is cut off, and key lines before an END line whose BEGIN was cut off);
- the known token formats of detect-secrets' regex plugins (AWS, GitHub, GitLab, Slack, Stripe, JWT,
  SendGrid, Twilio, PyPI, npm, Discord, Telegram, Square, Mailchimp, Azure storage keys, URL
  passwords), applied to the whole text at once instead of line by line, plus a few formats it lacks
  (GitHub fine-grained tokens, Google API keys, OpenAI/Anthropic `sk-` keys, Hugging Face `hf_`,
  npm `npm_`, Stripe test keys, Slack app tokens, `Bearer` and `Authorization:` values);
- assignments whose key names a secret (password, passwd, pwd, passphrase, secret, token, api_key,
  access_key, auth_key, private_key, client_secret, credential) with `=`, `:`, `:=`, `=>` or `==`:
  a quoted literal is always redacted; an unquoted value only when it does not look like code (a bare
  identifier or attribute without digits such as `str` or `settings.SECRET`, a call, a short
  number, or a `${...}` style placeholder are kept);
- high-entropy strings: runs of at least 20 base64/URL-safe characters with letters and digits, mixed
  case, frequent changes of character class and a Shannon entropy of at least 3.6 bits per character,
  and runs of at least 32 hex digits with entropy of at least 3.0 (detect-secrets' hex limit).

The placeholders themselves match no detector, so redact(redact(x)) == redact(x).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import PureWindowsPath
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

# --- exclusions ------------------------------------------------------------------------------------

#: Files Redline never suggests in nor records from.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".env*",
    "*.env",
    "*.pem",
    "*.key",
    "*.crt",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.gpg",
    "*.ovpn",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*secret*",
    "*credential*",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".htpasswd",
    ".git-credentials",
    ".ssh",
    ".gnupg",
    ".aws",
    ".docker/config.json",
    ".kube/config",
)


def uri_to_path(uri_or_path: str) -> str:
    """The file-system path of a `file:` URI (percent-decoded), the path part of another URI, or a
    plain path unchanged; always with `/` separators."""
    s = uri_or_path
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", s) and not re.match(r"^[A-Za-z]:[\\/]", s):
        parts = urlsplit(s)
        s = unquote(parts.path)
        if parts.scheme == "file" and parts.netloc and parts.netloc != "localhost":
            s = f"//{parts.netloc}{s}"  # UNC share
        if re.match(r"^/[A-Za-z]:", s):  # file:///c:/x
            s = s[1:]
    if "\\" in s:
        s = PureWindowsPath(s).as_posix()
    return s


def _glob_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return "".join(out)


class Exclusions:
    """Compiled exclusion globs (see the module docstring); call it with a URI or a path."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_EXCLUDES, extra: Iterable[str] = ()) -> None:
        self.patterns = tuple(p.strip() for p in (*patterns, *extra) if p.strip())
        component, anchored = [], []
        for p in self.patterns:
            p = p.rstrip("/")
            if "/" not in p:
                component.append(_glob_regex(p))
            elif p.startswith("/"):
                anchored.append("^" + _glob_regex(p.lstrip("/")))
            else:
                anchored.append("(?:^|/)" + _glob_regex(p))
        alternatives = []
        if component:
            alternatives.append(r"(?:^|/)(?:" + "|".join(component) + r")(?:/|$)")
        alternatives += [a + "(?:/|$)" for a in anchored]
        self._regex = re.compile("|".join(alternatives) or r"(?!)", re.IGNORECASE)

    def __call__(self, uri_or_path: str) -> bool:
        return self._regex.search(uri_to_path(uri_or_path).lstrip("/")) is not None if uri_or_path else False


_DEFAULT = Exclusions()


@lru_cache(maxsize=4096)
def _default_excluded(uri_or_path: str) -> bool:
    return _DEFAULT(uri_or_path)


def is_excluded(uri_or_path: str, patterns: Iterable[str] | None = None) -> bool:
    """Whether the document must be left alone: matches DEFAULT_EXCLUDES, or `patterns` if given."""
    if patterns is None:
        return _default_excluded(uri_or_path)
    return Exclusions(patterns)(uri_or_path)


# --- redaction -------------------------------------------------------------------------------------


class Finding(NamedTuple):
    start: int
    end: int
    kind: str


def placeholder(kind: str) -> str:
    return f"«redacted:{kind}»"


_KEY_NAME = r"[A-Z ]*PRIVATE KEY(?: BLOCK)?"
_PRIVATE_KEY = re.compile(
    rf"-----BEGIN {_KEY_NAME}-----[\s\S]*?(?:-----END {_KEY_NAME}-----|\Z)"
    rf"|(?:^[ \t]*[A-Za-z0-9+/=]{{8,}}[ \t]*\r?\n)+[ \t]*-----END {_KEY_NAME}-----",
    re.MULTILINE,
)

_DETECT_SECRETS_PLUGINS = (
    ("aws", AWSKeyDetector),
    ("azure", AzureStorageKeyDetector),
    ("url_password", BasicAuthDetector),
    ("discord", DiscordBotTokenDetector),
    ("github", GitHubTokenDetector),
    ("gitlab", GitLabTokenDetector),
    ("jwt", JwtTokenDetector),
    ("mailchimp", MailchimpDetector),
    ("npm", NpmDetector),
    ("openai", OpenAIDetector),
    ("pypi", PypiTokenDetector),
    ("sendgrid", SendGridDetector),
    ("slack", SlackDetector),
    ("square", SquareOAuthDetector),
    ("stripe", StripeDetector),
    ("telegram", TelegramBotTokenDetector),
    ("twilio", TwilioKeyDetector),
)

_B = r"(?<![A-Za-z0-9_\-])"  # a token's left edge
_OWN_FORMATS = (
    ("github", re.compile(_B + r"github_pat_[A-Za-z0-9_]{22,}")),
    ("github", re.compile(_B + r"gh[pousr]_[A-Za-z0-9]{30,}")),
    ("google", re.compile(_B + r"AIza[0-9A-Za-z_\-]{35}")),
    ("openai", re.compile(_B + r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    ("huggingface", re.compile(_B + r"hf_[A-Za-z0-9]{30,}")),
    ("npm", re.compile(_B + r"npm_[A-Za-z0-9]{36}")),
    ("stripe", re.compile(_B + r"(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{10,}")),
    ("slack", re.compile(_B + r"xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,}")),
    ("bearer", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{12,}=*)")),
    (
        "authorization",
        re.compile(r"(?i)authorization[\"']?\s*[:=]\s*[\"']?(?:basic|token|bearer)?\s*([A-Za-z0-9\-._~+/]{8,}=*)"),
    ),
)

_SECRET_KEY = (
    r"passw(?:or)?d|passwd|pwd|passphrase|secret|token|api[_\-]?key|access[_\-]?key|auth[_\-]?key"
    r"|private[_\-]?key|client[_\-]?secret|credential"
)
_ASSIGNMENT = re.compile(
    rf"(?i)(?<![A-Za-z0-9])(?P<key>[A-Za-z0-9_.\-]*(?:{_SECRET_KEY})[A-Za-z0-9_.\-]*)[\"'\]]?"
    r"[ \t]*(?::=|=>|==|=|:)[ \t]*"
    r"(?:(?P<q>[\"'`])(?P<quoted>(?:(?!(?P=q))[^\\\r\n]|\\.)*)(?P=q)"
    r"|(?P<bare>[^\s\"'`,;(){}\[\]<>]+)(?P<after>[(\[]?))"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NOT_SECRET_VALUES = frozenset(
    "none null nil true false undefined bearer basic token password secret str string int bytes".split()
)

_ENTROPY_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{20,}={0,2}(?![A-Za-z0-9+/=_\-])")
_HEX_CANDIDATE = re.compile(r"(?<![A-Za-z0-9_\-])(?:[0-9a-f]{32,}|[0-9A-F]{32,})(?![A-Za-z0-9_\-])")


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _char_class(c: str) -> int:
    return 0 if c.isdigit() else 1 if c.islower() else 2 if c.isupper() else 3


def looks_random(token: str) -> bool:
    """The high-entropy test for one base64/URL-safe run (see the module docstring)."""
    t = token.rstrip("=")
    if len(t) < 20:
        return False
    has_digit = any(c.isdigit() for c in t)
    has_lower = any(c.islower() for c in t)
    has_upper = any(c.isupper() for c in t)
    if not (has_digit and has_lower and has_upper):
        return False
    changes = sum(1 for x, y in zip(t, t[1:]) if _char_class(x) != _char_class(y))
    if changes / (len(t) - 1) < 0.3:  # camelCase words and paths change class far less often
        return False
    return _entropy(t) >= 3.6


def _plugin_patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for kind, cls in _DETECT_SECRETS_PLUGINS:
        for pattern in cls.denylist:
            out.append((kind, pattern))
    return out


_KNOWN = [*_plugin_patterns(), *_OWN_FORMATS]


def _matched_span(m: re.Match[str]) -> tuple[int, int]:
    """The secret inside a match: its first non-empty group, else the whole match."""
    for i in range(1, (m.re.groups or 0) + 1):
        if m.group(i):
            return m.span(i)
    return m.span()


def find_secrets(text: str) -> list[Finding]:
    """Secrets in `text`, as non-overlapping findings sorted by position."""
    found: list[Finding] = []
    for m in _PRIVATE_KEY.finditer(text):
        found.append(Finding(m.start(), m.end(), "private_key"))
    for kind, pattern in _KNOWN:
        for m in pattern.finditer(text):
            s, e = _matched_span(m)
            if e > s:
                found.append(Finding(s, e, kind))
    for m in _ASSIGNMENT.finditer(text):
        key = m.group("key").lower()
        kind = "password" if ("pass" in key or "pwd" in key) else "secret"
        if m.group("q") is not None:
            value = m.group("quoted")
            if value and value.lower() not in _NOT_SECRET_VALUES and value[0] not in "${%<":
                found.append(Finding(m.start("quoted"), m.end("quoted"), kind))
            continue
        value = m.group("bare")
        if len(value) < 3 or m.group("after") or value[0] in "${%<":
            continue
        if value.lower() in _NOT_SECRET_VALUES or value.isdigit() and len(value) < 8:
            continue
        if _IDENTIFIER.fullmatch(value) and not any(c.isdigit() for c in value):
            continue
        found.append(Finding(m.start("bare"), m.end("bare"), kind))
    for m in _ENTROPY_CANDIDATE.finditer(text):
        if looks_random(m.group()):
            found.append(Finding(m.start(), m.end(), "high_entropy"))
    for m in _HEX_CANDIDATE.finditer(text):
        if _entropy(m.group()) >= 3.0:
            found.append(Finding(m.start(), m.end(), "high_entropy"))
    return _merge(found)


def _merge(found: list[Finding]) -> list[Finding]:
    """Overlapping findings become one, named for the finding that came first in precedence."""
    if not found:
        return []
    order = {id(f): i for i, f in enumerate(found)}
    found.sort(key=lambda f: (f.start, order[id(f)]))
    merged = [found[0]]
    rank = [order[id(found[0])]]
    for f in found[1:]:
        last = merged[-1]
        if f.start < last.end:
            kind = f.kind if order[id(f)] < rank[-1] else last.kind
            merged[-1] = Finding(last.start, max(last.end, f.end), kind)
            rank[-1] = min(rank[-1], order[id(f)])
        else:
            merged.append(f)
            rank.append(order[id(f)])
    return merged


def redact(text: str) -> str:
    """`text` with every secret replaced by `«redacted:KIND»` (see the module docstring)."""
    if not text:
        return text
    findings = find_secrets(text)
    if not findings:
        return text
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(placeholder(f.kind))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)
