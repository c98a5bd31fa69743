"""Validation on the lean decoder, all policies side by side, gives what validating each policy alone
through transformers and peft gives: the same log-probabilities of y′, the same suggestions cut the
same way, and Mixtures that decode as training.mixture's decoder does."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training import evaluate, lean_validation
from training.data import Edit
from training.evaluate import EvalConfig

EVAL = EvalConfig(max_new_tokens=24, margin_tokens=12)


def _edit(i: int, prompt: str, final: str, **kw) -> Edit:
    return Edit(id=f"v{i}", prompt=prompt, prefix=prompt, suggestion="x", final=final, cost=1.0, char_cost=1.0,
                language=kw.pop("language", "python"), **kw)  # fmt: skip


EDITS = [
    _edit(0, "def add(a, b):\n    ", "return a + b"),
    _edit(1, "x = 1\n" * 30 + "def f(n):\n    ", "return n * 2  # doubled"),  # a longer prompt
    _edit(2, "The meeting is moved to", " Thursday at noon. Bring the notes.", language="markdown"),
    _edit(3, "Summarise: the cat sat on the mat.\n", "A cat sat down.", bound="answer"),
    _edit(4, "def g(a):\n    ", "if a:\n        return 1\n    return 0", bound="function"),
    _edit(5, "x", "y = 2"),  # a one-token prompt: nothing is read before its last token
]


@pytest.fixture(scope="module")
def policies(tiny_model_dir, tmp_path_factory):  # noqa: F811
    """The tiny base model wrapped by peft with three adapters — two random ones, and one trained to
    answer two lines of code, which an editor suggestion on one line cuts at its newline — their
    folders, and the lean decoder's weights."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from server import fast_decoder
    from training.lora import load_base
    from training.sup import SupConfig, train_sup

    root = tmp_path_factory.mktemp("lean")
    folders = {}
    for i, name in enumerate(("sup", "pref")):
        torch.manual_seed(20 + i)
        model, _ = load_base(tiny_model_dir)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(model, cfg).save_pretrained(root / name)
        folders[name] = root / name
    lines = [_edit(100 + i, f"def h{i}(n):\n    ", "a = 1\nb = 2") for i in range(8)]
    cfg = SupConfig(r=8, alpha=16, batch_size=4, grad_accum=1, max_prompt_tokens=64, max_completion_tokens=16,
                    min_edits=4, learning_rate=1e-2, max_steps=20)  # fmt: skip
    train_sup(tiny_model_dir, lines, root / "lines", cfg)
    folders["lines"] = root / "lines"
    model, tokenizer = load_base(tiny_model_dir)
    model.config.use_cache = True
    weights = fast_decoder.Weights(model)
    peft = PeftModel.from_pretrained(model, str(folders["sup"]), adapter_name="sup")
    for name in ("pref", "lines"):
        peft.load_adapter(str(folders[name]), adapter_name=name)
    return peft.eval(), tokenizer, weights, folders


def _alone(peft, tokenizer, name: str):
    if name == "base":
        with peft.disable_adapter():
            return evaluate.score_and_generate(peft, tokenizer, EDITS, cfg=EVAL)
    peft.set_adapter(name)
    return evaluate.score_and_generate(peft, tokenizer, EDITS, cfg=EVAL)


def test_side_by_side_equals_each_policy_alone(policies):
    peft, tokenizer, weights, folders = policies
    loaded = {"base": None, **lean_validation.load_policies(weights, folders)}
    stops = evaluate.eos_ids(tokenizer, peft)
    seen = []
    together = lean_validation.score_and_generate(weights, loaded, tokenizer, EDITS, stops, cfg=EVAL,
                                                  progress=lambda d, n: seen.append((d, n)))  # fmt: skip
    assert seen[-1] == (len(EDITS), len(EDITS))
    for name in loaded:
        logprobs, gens = together[name]
        want_lp, want_gens = _alone(peft, tokenizer, name)
        assert [len(t) for t in logprobs] == [len(t) for t in want_lp]
        for got, want in zip(logprobs, want_lp):
            assert max(abs(a - b) for a, b in zip(got, want)) < 1e-3
        assert [(g.text, g.stop_reason) for g in gens] == [(g.text, g.stop_reason) for g in want_gens], name
    # The policies do differ, and the suggestions stop for every reason there is.
    texts = {name: [g.text for g in together[name][1]] for name in loaded}
    assert texts["sup"] != texts["pref"] != texts["base"]
    reasons = {g.stop_reason for name in loaded for g in together[name][1]}
    assert {"stop", "length"} <= reasons
    assert together["lines"][1][0].text == "a = 1"


def test_mixtures_decode_as_the_mixture_decoder(policies):
    from training.mixture import MixtureDecoder

    peft, tokenizer, weights, folders = policies
    loaded = {"base": None, **lean_validation.load_policies(weights, folders)}
    stops = evaluate.eos_ids(tokenizer, peft)
    plans = {"mix": {"base": 0.2, "sup": 0.5, "pref": 0.3}, "only_pref": {"pref": 1.0, "sup": 0.0}}
    got = lean_validation.generate_mixtures(weights, plans, loaded, tokenizer, EDITS, stops, cfg=EVAL)
    decoder = MixtureDecoder(peft, ["base", "sup", "pref"], [0.2, 0.5, 0.3])
    want = evaluate.generate_with(lambda p, b: decoder.generate(p, b, stops), peft, tokenizer, EDITS, cfg=EVAL)
    assert [(g.text, g.stop_reason) for g in got["mix"]] == [(g.text, g.stop_reason) for g in want]
    # A mixture with all its weight on one policy suggests what that policy suggests alone.
    pref = lean_validation.score_and_generate(weights, {"pref": loaded["pref"]}, tokenizer, EDITS, stops, cfg=EVAL)
    assert [g.text for g in got["only_pref"]] == [g.text for g in pref["pref"][1]]
    with pytest.raises(ValueError, match="known policies"):
        lean_validation.generate_mixtures(weights, {"m": {"cost": 1.0}}, loaded, tokenizer, EDITS, stops)


def test_a_row_stops_once_serving_would_cut_its_text(policies):
    """Decoding stops at the serving rule's cut (an editor suggestion on one line of code stops at its
    newline) without changing what is shown; a trailing half character does not count as a cut."""
    from server.fast_decoder import FastDecoder

    peft, tokenizer, weights, folders = policies
    stops = evaluate.eos_ids(tokenizer, peft)
    e = replace(EDITS[0], final="a " * 40)  # a budget of 48 tokens
    lines = lean_validation.load_policies(weights, {"lines": folders["lines"]})
    calls = []
    forward = FastDecoder.forward

    def counting(self, ids, all_positions=False):
        calls.append(1)
        return forward(self, ids, all_positions)

    FastDecoder.forward = counting
    try:
        (_, gens), = lean_validation.score_and_generate(weights, lines, tokenizer, [e], stops, cfg=EVAL).values()
    finally:
        FastDecoder.forward = forward
    peft.set_adapter("lines")
    _, want = evaluate.score_and_generate(peft, tokenizer, [e], cfg=EVAL)
    assert (gens[0].text, gens[0].stop_reason) == (want[0].text, want[0].stop_reason) == ("a = 1", "stop")
    # the prompt, the scoring pass, then one step per token up to the newline ("a = 1\n": 5 or 6 tokens)
    assert len(calls) <= 2 + 6
    _, rule = evaluate.stop_rule(e)
    assert not lean_validation._cut(tokenizer, rule, tokenizer.encode("abc", add_special_tokens=False))
    assert lean_validation._cut(tokenizer, rule, tokenizer.encode("abc\nd", add_special_tokens=False))
    half = tokenizer.encode("é", add_special_tokens=False)
    if len(half) > 1:  # a byte-level tokenizer splits it: its first byte alone decodes to U+FFFD
        assert not lean_validation._cut(tokenizer, rule, half[:1])


def test_the_pipeline_validates_the_same_either_way(policies, tiny_model_dir, monkeypatch):  # noqa: F811
    """The run's validation (every policy, the fitted Mixture, the judge's verdicts) is the same on the
    lean decoder as through peft, the path for models and adapters the lean decoder cannot run."""
    import io
    import types

    from training import pipeline
    from training.progress import Progress

    _, _, _, folders = policies
    cfg = pipeline.PipelineConfig()
    cfg.eval = EVAL

    def validate(lean: bool):
        if not lean:
            monkeypatch.setattr(lean_validation, "supported", lambda model: "held to the peft path by the test")
        result, stream = pipeline.RunResult(), io.StringIO()
        scores, weights, comparison = pipeline._validate(tiny_model_dir, cfg, EDITS, dict(folders), active, True,
                                                         Progress("json", stream), result)  # fmt: skip
        return scores, weights, stream.getvalue(), comparison

    # The active version's best policy is its Mixture: it is decoded on the same edits for the gate.
    active = types.SimpleNamespace(id="v0", best=lambda: ("mixture", 0.5), adapters={"sup": folders["sup"]},
                                   mixture_weights={"base": 0.4, "sup": 0.6})  # fmt: skip
    lean, lean_weights, lean_log, lean_cmp = validate(True)
    peft, peft_weights, peft_log, peft_cmp = validate(False)
    assert lean_cmp["policy"] == "mixture" and lean_cmp["n"] == len(EDITS)
    assert lean_cmp["cost"] == peft_cmp["cost"] and lean_cmp["nll"] == pytest.approx(peft_cmp["nll"], abs=1e-4)
    assert set(lean) == set(peft) == {"base", "sup", "pref", "lines", "mixture"}
    for name in lean:
        a, b = lean[name], peft[name]
        assert [g.text for g in a.generations] == [g.text for g in b.generations], name
        assert (a.cost, a.served, a.degenerate) == (b.cost, b.served, b.degenerate), name
        assert a.nll == pytest.approx(b.nll, abs=1e-4)
    assert set(lean_weights) == set(peft_weights)
    assert all(lean_weights[k] == pytest.approx(peft_weights[k], abs=1e-3) for k in lean_weights)
    assert "side by side: edit 6 of 6" in lean_log and "side by side" not in peft_log
