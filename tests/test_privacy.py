"""Excluded files and secret redaction."""

from __future__ import annotations

import glob
import statistics
import sysconfig
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.privacy import DEFAULT_EXCLUDES, Exclusions, find_secrets, is_excluded, looks_random, redact, uri_to_path
from tests.planted_secrets import B64, planted


@pytest.mark.parametrize(
    ("where", "excluded"),
    [
        ("file:///home/u/proj/.env", True),
        ("file:///home/u/proj/.env.local", True),
        ("/home/u/proj/prod.env", True),
        ("file:///home/u/proj/certs/server.pem", True),
        ("file:///home/u/proj/tls.KEY", True),  # case does not matter
        ("file:///home/u/.ssh/id_rsa", True),
        ("file:///home/u/.ssh/config", True),  # everything in .ssh
        ("/home/u/.ssh/id_ed25519.pub", True),
        ("file:///home/u/proj/config/secrets.yaml", True),
        ("file:///home/u/proj/secrets/db.yaml", True),  # a matching folder excludes its contents
        ("file:///home/u/proj/aws_credentials.json", True),
        ("file:///home/u/.netrc", True),
        ("file:///home/u/vault.kdbx", True),
        ("file:///home/u/cert.p12", True),
        ("file:///home/u/.docker/config.json", True),
        ("file:///home/u/my%20secret%20notes/a.md", True),  # percent-decoded
        ("C:\\Users\\u\\proj\\.env", True),
        ("file:///c%3A/Users/u/proj/.env", True),
        ("file:///home/u/proj/app.py", False),
        ("file:///home/u/proj/environment.py", False),
        ("file:///home/u/proj/keyboard.py", False),
        ("file:///home/u/proj/docker/config.json", False),
        ("untitled:Untitled-1", False),
        ("", False),
    ],
)
def test_default_exclusions(where, excluded):
    assert is_excluded(where) is excluded


def test_own_patterns_anchor_and_span_folders():
    ex = Exclusions(DEFAULT_EXCLUDES, extra=["/srv/private/**", "build/*.log", "**/fixtures/*.json"])
    assert ex("/srv/private/a/b.py")
    assert not ex("/home/srv/private/a.py")  # anchored at the root
    assert ex("/p/build/x.log") and not ex("/p/build/sub/x.log")  # * does not cross /
    assert ex("/p/tests/fixtures/a.json") and ex("/p/.env")
    assert is_excluded("/p/app.py", patterns=["*.py"]) and not is_excluded("/p/.env", patterns=["*.py"])


def test_uri_to_path():
    assert uri_to_path("file:///home/u/a%20b.py") == "/home/u/a b.py"
    assert uri_to_path("file:///c%3A/x/y.py") == "c:/x/y.py"
    assert uri_to_path("file://server/share/x.py") == "//server/share/x.py"
    assert uri_to_path("C:\\x\\y.py") == "C:/x/y.py"
    assert uri_to_path("/plain/path") == "/plain/path"


# --- redaction -------------------------------------------------------------------------------------


def test_every_planted_secret_is_redacted():
    for p in planted(seed=3, rounds=5):
        out = redact(p.context)
        assert p.secret not in out, (p.kind, p.context)
        assert "«redacted:" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password = "hunter2"', 'password = "«redacted:password»"'),
        ('password: str = "hunter2"', 'password: str = "«redacted:password»"'),
        ("PASSWORD=swordfish", "PASSWORD=«redacted:password»"),
        ("export API_TOKEN=abc123", "export API_TOKEN=«redacted:secret»"),
        ("  password: hunter2\n", "  password: «redacted:password»\n"),
        ('{"client_secret": "9f8e7d6c5b4a39281706"}', '{"client_secret": "«redacted:secret»"}'),
        ("postgres://admin:pa55w0rd@db:5432/app", "postgres://admin:«redacted:url_password»@db:5432/app"),
        ("Authorization: Bearer abcdef0123456789xyz", "Authorization: Bearer «redacted:authorization»"),
        ("key = AKIAABCDEFGHIJKLMNOP", "key = «redacted:aws»"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nafter",
            "«redacted:private_key»\nafter",
        ),
        ("before\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "before\n«redacted:private_key»"),  # cut off
        ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAAAABBBBCCCC1234\n-----END RSA PRIVATE KEY-----", "«redacted:private_key»"),
    ],
)
def test_redact_examples(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=16",
        "password = get_password()",
        "db_password = os.environ['DB_PASSWORD']",
        "token = tokenizer.encode(text)",
        "def check_password(password: str) -> bool:",
        "if token == primary_result_key:",
        'input_token = "next_token"',
        'ALLOW_CREDENTIALS = "allowCredentials"',
        "secret_key = settings.SECRET_KEY",
        "password = None",
        'password = ""',
        'url = "https://github.com/python/cpython/blob/main/Lib/asyncio/tasks.py"',
        "class AbstractSingletonProxyFactoryBean:",
        "def test_sympy__functions__special__hyper__HyperRep_log1():",
        "id = '550e8400-e29b-41d4-a716-446655440000'",
        "The password must be at least 12 characters long.",
        "mask-image: url(icons/arrow-down-thin.svg)",
    ],
)
def test_ordinary_code_and_prose_are_left_alone(text):
    assert find_secrets(text) == [] and redact(text) == text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("ab =:'\"\n_-/+xyzAKIAghp0123456789«»") + ["password", "token", "secret", "-----BEGIN RSA PRIVATE KEY-----"]),
        max_size=60,
    ).map("".join)
)
def test_redact_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


def test_random_base64_strings_are_high_entropy_almost_always():
    import random

    rng = random.Random(5)
    samples = ["".join(rng.choice(B64) for _ in range(rng.randint(24, 64))) for _ in range(2000)]
    mixed = [s for s in samples if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)]
    assert sum(map(looks_random, mixed)) / len(mixed) > 0.98


def test_redaction_is_fast_enough_for_every_suggestion_record():
    """About 1 ms for 4 KB of real code on a 2-core machine; the bound here leaves room for a busy one."""
    files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))[:40]
    text = "".join(open(f, encoding="utf-8").read() for f in files)
    chunks = [text[i : i + 4096] for i in range(0, min(len(text), 4096 * 200), 4096)]
    times = []
    for c in chunks:
        t = time.perf_counter()
        redact(c)
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 0.010
