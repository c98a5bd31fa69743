"""Edit cost between a suggestion y and the user's settled text y′.

The cost is the one the research uses ("Principled Fine-tuning of LLMs from User-Edits", after Gao et
al. 2024): the Levenshtein distance between y and y′ counted in word tokens, divided by the number of
tokens of y. 0 means the suggestion was kept as it was; 1 means as many token edits as y had tokens.

Tokenizer (`tokenize`): a token is either a run of word characters (letters, digits, underscore, any
script), with inner apostrophes kept so that "don't" and "l’homme" stay one token, or one single
punctuation or symbol character. Whitespace only separates tokens: re-indenting or re-wrapping text
costs nothing at the word level (the character figure sees it). So `foo(bar, 2)` is
`foo ( bar , 2 )` and "Hello, world." is `Hello , world .`. Splitting punctuation off words means a
changed comma costs one edit instead of turning "world," into a different word than "world".

Empty y: the denominator is max(tokens of y, 1), so an empty y against an empty y′ costs 0 and against
a y′ of n tokens costs n (every token had to be typed). A whitespace-only y has no tokens and is treated
the same way.

`char_cost` is the same figure over characters: character Levenshtein distance divided by
max(len(y), 1), whitespace included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Word tokens of `text` as described in the module docstring."""
    return _TOKEN.findall(text)


def word_distance(y: str, y_prime: str) -> int:
    """Levenshtein distance between the token lists of y and y′ (insert, delete, substitute = 1)."""
    return Levenshtein.distance(tokenize(y), tokenize(y_prime))


def word_cost(y: str, y_prime: str) -> float:
    """The paper's cost: token Levenshtein distance / max(number of tokens of y, 1)."""
    ty = tokenize(y)
    return Levenshtein.distance(ty, tokenize(y_prime)) / max(len(ty), 1)


def char_cost(y: str, y_prime: str) -> float:
    """Character Levenshtein distance / max(len(y), 1)."""
    return Levenshtein.distance(y, y_prime) / max(len(y), 1)


@dataclass(frozen=True)
class EditCost:
    cost: float  # word-level, the paper's c
    char_cost: float  # character-level, same normalisation
    distance: int  # word tokens changed
    tokens: int  # word tokens in y


def edit_cost(y: str, y_prime: str) -> EditCost:
    """Both figures at once (tokenizes each text once)."""
    ty = tokenize(y)
    d = Levenshtein.distance(ty, tokenize(y_prime))
    return EditCost(
        cost=d / max(len(ty), 1),
        char_cost=char_cost(y, y_prime),
        distance=d,
        tokens=len(ty),
    )
