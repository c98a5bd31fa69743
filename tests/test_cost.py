"""The edit cost between a suggestion y and the user's y′."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.capture.cost import char_cost, edit_cost, tokenize, word_cost, word_distance


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("foo(bar, 2)", ["foo", "(", "bar", ",", "2", ")"]),
        ("Hello, world.", ["Hello", ",", "world", "."]),
        ("don't stop", ["don't", "stop"]),
        ("l’homme", ["l’homme"]),
        ("  a\tb\r\nc  ", ["a", "b", "c"]),
        ("x==y", ["x", "=", "=", "y"]),
        ("naïve café 東京", ["naïve", "café", "東京"]),
        ("ok 😀", ["ok", "😀"]),
        ("snake_case_name", ["snake_case_name"]),
        ("", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("y", "y_prime", "cost"),
    [
        ("return a + b", "return a + b", 0.0),  # kept
        ("return a + b", "return a - b", 1 / 4),  # one substitution in four tokens
        ("return a + b", "return a + b + c", 2 / 4),  # two insertions
        ("return a + b", "return", 3 / 4),  # three deletions
        ("return a + b", "", 1.0),  # all deleted
        ("return a + b", "return  a +\n    b", 0.0),  # whitespace costs no word edits
        ("The cat sat.", "The cat sat!", 1 / 4),
        ("The cat sat.", "A dog ran away.", 4 / 4),  # 3 substitutions + 1 insertion
        ("", "", 0.0),  # empty y: divided by 1
        ("", "three new tokens", 3.0),
        ("   ", "x", 1.0),  # whitespace-only y has no tokens
    ],
)
def test_word_cost(y, y_prime, cost):
    assert word_cost(y, y_prime) == pytest.approx(cost)
    assert edit_cost(y, y_prime).cost == pytest.approx(cost)


@pytest.mark.parametrize(
    ("y", "y_prime", "cost"),
    [
        ("abcd", "abcd", 0.0),
        ("abcd", "abce", 0.25),
        ("a b", "a  b", 1 / 3),  # the character figure sees whitespace
        ("", "xy", 2.0),
        ("ab", "", 1.0),
    ],
)
def test_char_cost(y, y_prime, cost):
    assert char_cost(y, y_prime) == pytest.approx(cost)


def test_edit_cost_reports_its_parts():
    c = edit_cost("foo(1)", "foo(2)")
    assert (c.distance, c.tokens, c.cost, c.char_cost) == (1, 4, 0.25, pytest.approx(1 / 6))


words = st.lists(st.sampled_from(["a", "b", "foo", "(", ")", ".", "😀", "é"]), max_size=12).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(words, words)
def test_cost_properties(y, y_prime):
    d = word_distance(y, y_prime)
    assert d == word_distance(y_prime, y)
    assert word_cost(y, y) == 0.0 and char_cost(y, y) == 0.0
    assert word_cost(y, y_prime) == pytest.approx(d / max(len(tokenize(y)), 1))
    assert abs(len(tokenize(y)) - len(tokenize(y_prime))) <= d <= max(len(tokenize(y)), len(tokenize(y_prime)))
