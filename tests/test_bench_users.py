"""Simulated users: each preference keeps what satisfies it, edits the rest until it does, judges
content so that junk is rewritten from the context, and composes into strong, weak and drifting users."""

from __future__ import annotations

import pytest

from server.capture.cost import word_cost
from training.bench.codestyle import CodeContent
from training.bench.contexts import load_contexts
from training.bench.sandbox import check_completion
from training.bench.users import (
    SETTINGS,
    Brevity,
    BritishSpelling,
    Bullets,
    Docstring,
    DriftingUser,
    EarlyReturns,
    Email,
    Formatter,
    FStrings,
    NoClosing,
    NoContractions,
    PassesTests,
    Pep8Names,
    QuestionAtEnd,
    SecondPerson,
    TypeHints,
    User,
    UserLike,
    load_user,
    make_user,
)
from training.bench.writing import content_words, reference_text

# A document every writing example is about: the users judge content against `source`.
DOC = {
    "id": "t/doc",
    "domain": "writing",
    "task": "summary",
    "source_name": "iterater",
    "source": (
        "Nursing homes are at the centre of the COVID-19 pandemic because residents are old and frail. "
        "We develop an agent-based model of how the virus spreads between residents and staff. "
        "The model is calibrated to data from nursing homes in Austria. "
        "We find that preventive screening works best when test results arrive quickly. "
        "Antigen tests every few days can prevent most large outbreaks."
    ),
    "prompt": "Summarise the following text in a few sentences:\n\n...\n\nSummary:",
}
GOOD = (
    "An agent-based model shows how the virus spreads in nursing homes. "
    "Preventive screening works best when test results arrive quickly. "
    "Antigen tests every few days prevent most outbreaks."
)
JUNK = [
    "",
    "- 1.\n- 2.\n- 3.\n- 4.\n- 5.",
    "The football match last night was exciting and the weather stayed sunny for the whole game.",
    "the virus spreads the virus spreads the virus spreads the virus spreads the virus spreads",
]

# (preference, a response that satisfies it, one that does not, text the edit must contain or None)
WRITING_CASES = [
    (
        Bullets(3, 12),
        "- An agent-based model shows how the virus spreads\n- Fast test results make screening work",
        GOOD,
        "- ",
    ),
    (Brevity(2), "An agent-based model shows how the virus spreads in nursing homes. Fast tests help.", GOOD, None),
    (NoClosing(), GOOD, GOOD + " Hope this helps! Let me know if you have questions.", None),
    (NoClosing(), GOOD, "In conclusion, " + GOOD[0].lower() + GOOD[1:], "An agent-based"),
    (Email(), f"Hi Anna,\n\n{GOOD}\n\nBest regards,\nTom", GOOD, "Best regards,"),
    (Email(), f"Hello,\n\n{GOOD}\n\nCheers", f"Hi team, {GOOD}", "Hi team,\n\nAn agent-based"),
    (SecondPerson(), GOOD + " You can read the data online.", GOOD, "you"),
    (SecondPerson(), GOOD + " You can read the data online.", GOOD + " The reader can see the data.", "You can see"),
    (
        BritishSpelling(),
        GOOD + " The centre of the outbreak.",
        GOOD + " We analyze the behavior at the center.",
        "analyse the behaviour at the centre",
    ),
    (
        NoContractions(),
        GOOD + " It is not slow.",
        GOOD + " It's fast and they don't wait. Can't stop.",
        "It is fast and they do not wait. Cannot stop.",
    ),
    (QuestionAtEnd(), GOOD + " Should every home do this?", GOOD, "What do you think?"),
    (
        QuestionAtEnd(),
        f"Hi,\n\n{GOOD} Should we try it?\n\nBest regards,",
        f"Hi,\n\n{GOOD}\n\nBest regards,",
        "?\n\nBest regards,",
    ),
]


@pytest.mark.parametrize(
    ("pref", "ok", "not_ok", "expect"), WRITING_CASES, ids=[f"{c[0].name}-{i}" for i, c in enumerate(WRITING_CASES)]
)
def test_writing_preference_keeps_satisfied_and_edits_the_rest(pref, ok, not_ok, expect):
    assert pref.satisfied(DOC, ok)
    assert pref.apply(DOC, ok) == ok  # satisfied: kept as it is, cost 0
    assert not pref.satisfied(DOC, not_ok)
    edited = pref.apply(DOC, not_ok)
    assert edited != not_ok
    assert pref.satisfied(DOC, edited)
    assert pref.apply(DOC, edited) == edited  # idempotent
    if expect:
        assert expect in edited
    # A real edit keeps the content: it is not a rewrite from the source.
    assert word_cost(not_ok, edited) < 1.0


ALL_WRITING = [
    Bullets(3, 12),
    Brevity(2),
    NoClosing(),
    Email(),
    SecondPerson(),
    BritishSpelling(),
    NoContractions(),
    QuestionAtEnd(),
]


@pytest.mark.parametrize("pref", ALL_WRITING, ids=lambda p: p.name)
@pytest.mark.parametrize("junk", JUNK, ids=["empty", "numbered-list", "off-topic", "loop"])
def test_junk_is_rewritten_from_the_source_at_a_high_cost(pref, junk):
    assert not pref.satisfied(DOC, junk)
    edited = pref.apply(DOC, junk)
    assert pref.satisfied(DOC, edited) and pref.apply(DOC, edited) == edited
    source_words = set(content_words(DOC["source"]))
    mine = content_words(edited)
    assert sum(w in source_words for w in mine) >= 0.6 * len(mine)  # built from the context
    assert content_words(reference_text(DOC))[0] in mine
    assert word_cost(junk, edited) >= 0.9


def test_bullets_shape():
    long = " ".join(["Word"] * 30) + ". Second sentence is here. Third one too. Fourth is dropped."
    doc = {**DOC, "source": long + " " + DOC["source"]}
    out = Bullets(3, 12).format(doc, long)
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert all(len(line[2:].split()) <= 12 for line in lines)


def test_every_writing_preference_holds_on_real_contexts():
    """On real documents and a typical chatty answer, each edit satisfies its preference and is stable."""
    contexts = load_contexts("writing", n=12, seed=5)
    for ctx in contexts:
        chatty = "Sure! Here is a summary: " + " ".join(ctx["source"].split()[:70]) + " Hope this helps!"
        for pref in ALL_WRITING:
            for text in (chatty, "", ctx["source"]):
                out = pref.apply(ctx, text)
                assert pref.satisfied(ctx, out), (pref.name, ctx["id"], text[:40], out)
                assert pref.apply(ctx, out) == out


# --- code ------------------------------------------------------------------------------------------

CODE = {
    "id": "t/code",
    "domain": "code",
    "task": "complete",
    "source_name": "humaneval",
    "entry_point": "count_big",
    "prompt": 'def count_big(values: list[int], limit: int) -> int:\n    """Count values above limit."""\n',
    "canonical_solution": "    return sum(1 for v in values if v > limit)\n",
    "test": "def check(f):\n    assert f([1, 5, 9], 4) == 2\n",
}
CODE["source"] = CODE["prompt"]

CODE_CASES = [
    (
        Pep8Names(),
        "    big_count = 0\n    for v in values:\n        big_count += v > limit\n    return big_count\n",
        "    bigCount = 0\n    for V in values:\n        bigCount += V > limit\n    print(f'{bigCount} big')\n    return bigCount\n",
        "print(f'{big_count} big')",
    ),
    (
        TypeHints(),
        "    def above(v: int, margin: int = 0) -> bool:\n        return v > limit + margin\n    return sum(map(above, values))\n",
        "    def above(v, margin=0):\n        return v > limit + margin\n    return sum(map(above, values))\n",
        "def above(v: object, margin: int = 0) -> bool:",
    ),
    (
        TypeHints(),
        "def count_big(values: list[int], limit: int) -> int:\n    return len([v for v in values if v > limit])\n",
        "def count_big(values, limit):\n    return len([v for v in values if v > limit])\n",
        "def count_big(values: list[int], limit: int) -> int:",
    ),
    (
        Docstring(),
        '    def above(v):\n        """Above."""\n        return v > limit\n    return sum(map(above, values))\n',
        "    def above(v): return v > limit\n    return sum(map(above, values))\n",
        '    def above(v):\n        """Above."""\n        return v > limit\n',
    ),
    (
        Docstring(),
        'def count_big(values, limit):\n    """Count."""\n    return len([v for v in values if v > limit])\n',
        "def count_big(values, limit):\n    return len([v for v in values if v > limit])\n",
        '    """Count values above limit."""\n    return len',
    ),
    (
        FStrings(),
        '    n = sum(v > limit for v in values)\n    print(f"{n} of {len(values)}")\n    return n\n',
        '    n = sum(v > limit for v in values)\n    print("%d of %s" % (n, len(values)))\n    print("{} of {:>4}".format(n, limit))\n    return n\n',
        'print(f"{n} of {len(values)}")\n    print(f"{n} of {limit:>4}")',
    ),
    (
        EarlyReturns(),
        "    if not values:\n        return 0\n    return sum(v > limit for v in values)\n",
        "    if not values:\n        return 0\n    else:\n        n = sum(v > limit for v in values)\n        return n\n",
        "        return 0\n    n = sum(v > limit for v in values)\n    return n\n",
    ),
    (
        EarlyReturns(),
        "    if not values:\n        return 0\n    if len(values) == 1:\n        return int(values[0] > limit)\n    return sum(v > limit for v in values)\n",
        "    if not values:\n        return 0\n    elif len(values) == 1:\n        return int(values[0] > limit)\n    else: return sum(v > limit for v in values)\n",
        "    if len(values) == 1:\n        return int(values[0] > limit)\n    return sum(",
    ),
    (
        Formatter("ruff"),
        "    return sum(1 for v in values if v > limit)\n",
        "    return sum( 1 for v in values if v>limit )\n",
        "    return sum(1 for v in values if v > limit)\n",
    ),
    (
        Formatter("black"),
        "    total = {'a': 1}\n    return sum(1 for v in values if v > limit)\n".replace("'", '"'),
        "    total = {'a':1}\n    return sum(1 for v in values if v > limit)\n",
        '    total = {"a": 1}\n',
    ),
]


@pytest.mark.parametrize(
    ("pref", "ok", "not_ok", "expect"), CODE_CASES, ids=[f"{c[0].name}-{i}" for i, c in enumerate(CODE_CASES)]
)
def test_code_preference_keeps_satisfied_and_edits_the_rest(pref, ok, not_ok, expect):
    assert pref.satisfied(CODE, ok)
    assert pref.apply(CODE, ok) == ok
    assert not pref.satisfied(CODE, not_ok)
    edited = pref.apply(CODE, not_ok)
    assert pref.satisfied(CODE, edited)
    assert pref.apply(CODE, edited) == edited
    assert expect in edited
    assert check_completion(CODE, edited).passed  # the edit keeps the code working


@pytest.mark.parametrize(
    "expr",
    [
        '"%s|%5s|%-5s|%r" % (s, s, s, s)',
        '"%d|%5d|%-5d|%05d|%+d|%x|%#x|%o" % (n, n, n, n, n, n, n, n)',
        '"%.2f|%8.3f|%e|%g|%%|{}" % (x, x, x, x)',
        '"%s" % s',
        '"{} and {}".format(s, n)',
        '"{1}-{0}-{1}".format(s, n)',
        '"{name}: {x:.1f} {{literal}}".format(name=s, x=x)',
        '"{0.real} {0!r}".format(x)',
        "'{}'.format(d['k'])",
    ],
)
def test_fstring_conversion_is_exact(expr):
    env = {"s": "ab'c", "n": 42, "x": 3.14159, "d": {"k": "v"}}
    body = f"    out = {expr}\n    return out\n"
    edited = FStrings().format(CODE, body)
    assert edited != body and ".format(" not in edited and '" % ' not in edited
    converted = edited.split("out = ", 1)[1].split("\n", 1)[0]
    assert converted.lstrip("r").startswith("f")
    assert eval(converted, {}, env) == eval(expr, {}, env)


def test_fstrings_leave_what_cannot_be_converted_exactly():
    body = '    a = "%(k)s" % d\n    b = "{}".format(*args)\n    c = "%s" % (x, y)\n    return a\n'
    assert FStrings().format(CODE, body) == body
    assert FStrings().format_ok(CODE, body)


CODE_JUNK = ["", "    pass\n", "- 1.\n- 2.\n- 3.\n", "    return 0\n", "    print('hello world')\n" * 6, "def (:\n"]


@pytest.mark.parametrize("junk", CODE_JUNK, ids=["empty", "pass", "list", "constant", "loop", "syntax"])
def test_code_junk_is_replaced_by_the_reference(junk):
    assert CodeContent().problem(CODE, junk) is not None
    user = make_user("code-style-strong")
    result = user.explain(CODE, junk)
    assert "sum(1 for v in values if v > limit)" in result.text
    assert check_completion(CODE, result.text).passed
    assert result.cost >= 0.9
    assert user.satisfied(CODE, result.text)


def test_canonical_solutions_pass_the_content_check():
    for ctx in load_contexts("humaneval", seed=None):
        assert CodeContent().problem(ctx, ctx["canonical_solution"]) is None, ctx["id"]


def test_strong_code_style_edits_keep_humaneval_solutions_correct():
    user = make_user("code-style-strong")
    for ctx in load_contexts("humaneval", n=4, seed=11):
        result = user.explain(ctx, ctx["canonical_solution"])
        assert user.satisfied(ctx, result.text)
        assert check_completion(ctx, result.text).passed, (ctx["id"], result.text)


@pytest.mark.slow
def test_strong_code_style_edits_keep_every_humaneval_solution_correct():
    from training.bench.sandbox import check_many, pass_at_1

    user = make_user("code-style-strong")
    contexts = load_contexts("humaneval", seed=None)
    edited = [user.edit(ctx, ctx["canonical_solution"]) for ctx in contexts]
    assert all(user.satisfied(c, e) for c, e in zip(contexts, edited, strict=True))
    assert pass_at_1(check_many(contexts, edited)) == 1.0


def test_passes_tests_replaces_a_wrong_completion():
    pref = PassesTests(timeout=5)
    assert pref.satisfied(CODE, CODE["canonical_solution"])
    wrong = "    return len(values) + limit\n"
    assert not pref.satisfied(CODE, wrong)
    assert pref.apply(CODE, wrong) == CODE["canonical_solution"]


# --- users -----------------------------------------------------------------------------------------


def test_a_user_keeps_a_satisfying_response_and_edits_the_rest():
    user = User([Bullets(3, 12), NoClosing()], "strong")
    kept = "- An agent-based model of nursing homes\n- Fast test results make screening work"
    result = user.explain(DOC, kept)
    assert result.text == kept and result.cost == 0 and result.applied == []
    result = user.explain(DOC, GOOD + " Hope this helps!")
    assert result.applied == ["bullets-3x12"] or "no-closing" in result.applied
    assert all(p.satisfied(DOC, result.text) for p in user.preferences_for(DOC))
    assert result.cost == word_cost(GOOD + " Hope this helps!", result.text) > 0
    assert isinstance(user, UserLike)


def test_the_preference_follows_the_source_of_the_context():
    user = User({"iterater": [Bullets(3, 12)], "stdlib": [Brevity(1)], "*": [QuestionAtEnd()]})
    assert user.edit(DOC, GOOD).startswith("- ")
    assert user.edit({**DOC, "source_name": "stdlib"}, GOOD).count(".") == 1
    assert user.edit({**DOC, "source_name": "other", "task": "other"}, GOOD).endswith("?")


def test_weak_users_enforce_a_random_part_each_time_and_are_reproducible():
    prefs = [NoContractions(), BritishSpelling(), QuestionAtEnd(), NoClosing()]
    text = GOOD + " It's in the center of the color map. Hope this helps!"
    strong = User(prefs, "strong")
    assert all(p.satisfied(DOC, strong.edit(DOC, text)) for p in prefs)

    def run(seed):
        weak = User(prefs, "weak", seed=seed)
        return [(weak.explain(DOC, text).active, weak.edit(DOC, text)) for _ in range(20)]

    first = run(3)
    assert first == run(3)  # the same seed, the same user
    actives = {tuple(a) for a, _ in first}
    assert len(actives) > 3  # the subset changes from call to call
    assert all(a for a, _ in first)  # never nothing
    # Some edits leave a preference unmet: the weak user's edits are incomplete.
    assert any(not all(p.satisfied(DOC, out) for p in prefs) for _, out in first)
    # Junk is rewritten whatever the subset, since every preference judges content.
    weak = User(prefs, "weak", seed=0)
    assert all(word_cost("", weak.edit(DOC, "")) > 5 for _ in range(5))


def test_drift_switches_preferences_after_k_edits():
    user = DriftingUser(User([Bullets(3, 12)]), User([Brevity(1), QuestionAtEnd()]), switch_after=2)
    first = [user.edit(DOC, GOOD) for _ in range(2)]
    later = [user.edit(DOC, GOOD) for _ in range(2)]
    assert all(t.startswith("- ") for t in first)
    assert all(not t.startswith("- ") and t.endswith("What do you think?") for t in later)
    drift = make_user("writing-summary-drift", switch_after=1)
    a, b = drift.edit(DOC, GOOD), drift.edit(DOC, GOOD)
    assert a.startswith("- ") and not b.startswith("- ")


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_makes_a_user_whose_edits_satisfy_it(name):
    setting = SETTINGS[name]
    user = make_user(name, seed=0)
    assert callable(user.edit)
    n = 1 if setting.contexts == "humaneval" else 4
    for ctx in load_contexts(setting.contexts, "online", n=n, seed=0):
        response = ctx.get("canonical_solution") or ctx["source"]
        out = user.edit(ctx, response)
        inner = user.current if isinstance(user, DriftingUser) else user
        if name.endswith("strong"):
            assert inner.satisfied(ctx, out), (name, ctx["id"])
        assert user.edit(ctx, "") != ""


def test_a_prompt_string_works_as_the_context():
    ctx = load_contexts("email-iterater", n=1, seed=0)[0]
    user = make_user("writing-email-strong")
    assert user.edit(ctx["prompt"], "Hi, it's fine.") == user.edit(ctx, "Hi, it's fine.")


class EchoUser:
    """A user written elsewhere: keeps every response."""

    def edit(self, context, response):
        return response


ECHO = EchoUser()


class Holder:
    user = ECHO


def make_echo():
    return EchoUser()


def test_load_user():
    assert isinstance(load_user("writing-summary-weak"), User)
    assert isinstance(load_user("tests.test_bench_users:EchoUser"), EchoUser)  # a class: instantiated
    assert load_user("tests.test_bench_users:ECHO") is ECHO
    assert load_user("tests.test_bench_users:Holder.user") is ECHO  # a dotted attribute
    assert isinstance(load_user("tests.test_bench_users:make_echo"), EchoUser)  # a factory: called
    with pytest.raises(ValueError):
        load_user("no-such-setting")
    with pytest.raises(ImportError):
        load_user("no_such_module_here:x")
    with pytest.raises(TypeError):
        load_user("tests.test_bench_users:GOOD")
