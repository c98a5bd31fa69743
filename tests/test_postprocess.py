"""Table-driven: a document with a cursor marker, what the model said, what the user should see."""

import pytest

from server.postprocess import finalize, stop_at
from server.prompt import PromptConfig, build_context, render_prompt, FIM_STYLES

CURSOR = "█"

CASES = [
    # (name, language, document with cursor, raw model output, expected suggestion)
    ("code stops at end of line", "python", "x = compute(█", "a, b)\ny = 2\n", "a, b)"),
    ("closing bracket already there", "python", "x = compute(█)", "a, b)\n", "a, b"),
    ("suffix equal to suggestion", "python", "x = █foo()", "foo()\n", ""),
    ("whitespace only is nothing", "python", "x = █", "   \n", ""),
    ("copy of the previous line is junk", "python", "total = a + b\n█", "total = a + b\n", ""),
    (
        "block after an opener",
        "python",
        "def add(a, b):\n    █",
        "return a + b\n\ndef sub(a, b):\n",
        "return a + b",
    ),
    (
        "block ends at dedent",
        "python",
        "for x in xs:\n    █",
        "print(x)\n    total += x\nprint(total)\n",
        "print(x)\n    total += x",
    ),
    ("js statement on one line", "javascript", "const y = █", "a + b;\nconst z = 3;\n", "a + b;"),
    (
        "prose stops at end of sentence",
        "markdown",
        "The meeting covered the budget. We agreed that █",
        "the plan works. Then we left early.",
        "the plan works.",
    ),
    ("prose stops at newline", "plaintext", "Dear Sam, █", "thanks for the notes\n\nBest,", "thanks for the notes"),
    ("prose no double space", "markdown", "It was █", " a good day. And", "a good day."),
    (
        "prose sentence with closing quote",
        "markdown",
        'She said "█',
        'it is done." Then she left.',
        'it is done."',
    ),
    ("decimal point is not a sentence end", "markdown", "Pi is about █", "3.14 in value. More", "3.14 in value."),
    ("replacement character cuts", "python", "s = █", "'abc\ufffd\ufffd'\n", "'abc"),
    (
        "runaway repetition is cut",
        "markdown",
        "Items: █",
        "apples and pears, apples and pears, apples and pears, apples and pears",
        "apples and pears,",
    ),
    ("astral characters survive", "markdown", "Party time █", "🎉🎉 at noon. Bring food", "🎉🎉 at noon."),
]


def _ctx(language, doc):
    offset = doc.index(CURSOR)
    text = doc.replace(CURSOR, "")
    return build_context(text, offset, language)


@pytest.mark.parametrize("name,language,doc,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_finalize(name, language, doc, raw, expected):
    assert finalize(_ctx(language, doc), raw) == expected


@pytest.mark.parametrize(
    "language,doc,partial,should_stop",
    [
        ("python", "x = █", "foo(1", False),
        ("python", "x = █", "foo(1)\n", True),
        ("markdown", "Hello █", "there my friend", False),
        ("markdown", "Hello █", "there. ", True),
        ("python", "def f():\n    █", "return 1\n", False),  # a block may go on
        ("python", "def f():\n    █", "return 1\n\n", True),
    ],
)
def test_stop_at_while_decoding(language, doc, partial, should_stop):
    assert (stop_at(_ctx(language, doc), partial) is not None) == should_stop


def test_window_keeps_a_stable_start_while_typing():
    cfg = PromptConfig(max_prefix_chars=400, anchor_lines=8)
    lines = [f"line_{i} = {i} * 2  # some words here" for i in range(200)]
    text = "\n".join(lines) + "\n"
    starts = set()
    for typed in ["a", "ab", "abc", "abcd", "abcde"]:
        doc = text + typed
        prefix = build_context(doc, len(doc), "python", cfg).prefix
        assert len(prefix) <= 400
        assert prefix.endswith(typed)
        starts.add(prefix.split("\n", 1)[0])
    assert len(starts) == 1  # the same anchor line: the key/value cache stays reusable


def test_window_cuts_one_huge_line_by_characters():
    doc = "x" * 10_000
    ctx = build_context(doc, len(doc), "python", PromptConfig(max_prefix_chars=300))
    assert ctx.prefix == "x" * 300


def test_prompt_plain_or_fill_in_the_middle():
    ctx = _ctx("python", "a = 1\nb = █\nc = 3\n")
    assert render_prompt(ctx) == "a = 1\nb = "
    fim = FIM_STYLES[1]
    assert render_prompt(ctx, fim) == "<fim_prefix>a = 1\nb = <fim_suffix>\nc = 3\n<fim_middle>"


def test_crlf_documents_are_normalised():
    ctx = _ctx("python", "a = 1\r\nb = █\r\nc = 3\r\n")
    assert "\r" not in ctx.prefix + ctx.suffix + ctx.line_suffix


def test_offset_outside_document_is_an_error():
    with pytest.raises(ValueError):
        build_context("abc", 4, "python")
