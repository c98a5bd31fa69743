"""Random secrets of the kinds Redline must never store, generated from a seed, each in a line of
the text it would be found in. Shared by the privacy and store tests."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


@dataclass(frozen=True)
class Planted:
    kind: str
    secret: str  # must not survive redaction
    context: str  # a line (or block) of text holding it


def planted(seed: int = 0, rounds: int = 3) -> list[Planted]:
    rng = random.Random(seed)

    def r(alphabet: str, n: int) -> str:
        while True:
            s = "".join(rng.choice(alphabet) for _ in range(n))
            # Real keys mix classes; a draw without a digit or a capital is not what we test here.
            if alphabet not in (B64, URLSAFE, ALNUM) or (any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)):
                return s

    out: list[Planted] = []
    for _ in range(rounds):
        aws_id = rng.choice(["AKIA", "ASIA"]) + r(string.ascii_uppercase + string.digits, 16)
        aws_secret = r(B64, 40)
        gh = "ghp_" + r(ALNUM, 36)
        gh_pat = "github_pat_" + r(ALNUM + "_", 82)
        slack = f"xoxb-{r(string.digits, 12)}-{r(string.digits, 13)}-{r(ALNUM, 24)}"
        stripe = "sk_live_" + r(ALNUM, 24)
        google = "AIza" + r(URLSAFE, 35)
        jwt = f"eyJ{r(URLSAFE, 30)}.eyJ{r(URLSAFE, 40)}.{r(URLSAFE, 43)}"
        pw_kwarg = r(ALNUM + "!@#%^&*", 14)
        pw_env = r(ALNUM, 12)
        pw_yaml = r(ALNUM + "!@%^&*", 10)
        entropy = r(B64, 48)
        key_lines = [r(B64, 64) for _ in range(5)]
        key_block = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(key_lines) + "\n-----END RSA PRIVATE KEY-----"
        out += [
            Planted("aws", aws_id, f'aws_access_key_id = "{aws_id}"'),
            Planted("aws_secret", aws_secret, f'aws_secret_access_key = "{aws_secret}"'),
            Planted("github", gh, f"GITHUB_TOKEN={gh}"),
            Planted("github_pat", gh_pat, f'gh = Github("{gh_pat}")'),
            Planted("slack", slack, f'client = WebClient(token="{slack}")'),
            Planted("stripe", stripe, f'stripe.api_key = "{stripe}"'),
            Planted("google", google, f"const KEY = '{google}';"),
            Planted("jwt", jwt, f'headers = {{"Authorization": "Bearer {jwt}"}}'),
            Planted("password", pw_kwarg, f'db = connect(host="db", password="{pw_kwarg}")'),
            Planted("password", pw_env, f"DB_PASSWORD={pw_env}"),
            Planted("password", pw_yaml, f"database:\n  password: {pw_yaml}\n"),
            Planted("high_entropy", entropy, f"the response carried {entropy} as its nonce"),
            *[Planted("private_key", line, key_block) for line in key_lines],
        ]
    return out
