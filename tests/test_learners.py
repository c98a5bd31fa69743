"""The learners on a tiny random Llama (real tokenizer): weights move, validation improves, DPO widens
the chosen-rejected margin, Early picks λ by log-loss; validation helpers; the whole pipeline."""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from server import versions
from tests.tiny_model import tiny_model_dir  # noqa: F401  (fixture)
from training import evaluate, pipeline
from training.data import Edit, TooFewEdits
from training.early import EarlyConfig, train_early
from training.evaluate import EvalConfig, Generated, PolicyScore
from training.pref import PrefConfig, train_pref
from training.progress import Progress
from training.sup import SupConfig, train_sup

# The synthetic user: whatever the model suggests after `return`, they settle on the same ending.
WANTED = "return None  # handled"


def synthetic_edits(n: int, start: int = 0) -> list[Edit]:
    out = []
    for i in range(start, start + n):
        prompt = f"def handler_{i}(event):\n    log(event)\n    "
        out.append(
            Edit(id=f"e{i:03d}", prompt=prompt, prefix=prompt, suggestion="return event", final=WANTED,
                 cost=1.0, char_cost=1.0, language="python", created_at=float(i), kind="edited")  # fmt: skip
        )
    return out


TRAIN, VAL = synthetic_edits(16), synthetic_edits(4, start=100)
FAST = dict(r=8, alpha=16, batch_size=4, grad_accum=1, max_prompt_tokens=64, max_completion_tokens=16, min_edits=4)
EVAL = EvalConfig(max_new_tokens=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """As the trainer runs on a 2-core machine (training.lora.cpu_threads): one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def lora_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def scored(model_dir: Path, adapter: Path | None, edits=VAL) -> PolicyScore:
    from peft import PeftModel

    from training.lora import load_base

    model, tokenizer = load_base(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return evaluate.evaluate_policy(model, tokenizer, edits, config=EVAL, lengths=SupConfig(**FAST).lengths)


def margin(model_dir: Path, adapter: Path | None, edits=TRAIN[:8]) -> float:
    """Mean log π(y′|x) − log π(y|x) over `edits`."""
    from peft import PeftModel

    from training.lora import load_base

    model, tokenizer = load_base(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    chosen = evaluate.completion_logprobs(model, tokenizer, edits)
    rejected = evaluate.completion_logprobs(model, tokenizer, [replace(e, final=e.suggestion) for e in edits])
    return sum(sum(c) - sum(r) for c, r in zip(chosen, rejected)) / len(edits)


@pytest.fixture(scope="module")
def sup_adapter(tiny_model_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("sup") / "sup"
    cfg = SupConfig(**FAST, learning_rate=1e-2, max_steps=30)
    steps: list[tuple[int, int]] = []
    result = train_sup(tiny_model_dir, TRAIN, out, cfg, progress=lambda s, o: steps.append((s, o)))
    assert result.steps == 30 and steps[-1] == (30, 30) and result.losses[-1] < result.losses[0]
    return out


# --- SUP ----------------------------------------------------------------------------------------------


def test_sup_moves_the_adapter_weights(sup_adapter):
    tensors = lora_tensors(sup_adapter)
    b = [t for name, t in tensors.items() if "lora_B" in name]
    assert b and all(name.count("lora_") == 1 for name in tensors)
    assert max(float(t.abs().max()) for t in b) > 0  # peft starts every B at zero
    config = json.loads((sup_adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA"


def test_sup_lowers_validation_log_loss_and_cost(tiny_model_dir, sup_adapter):  # noqa: F811
    before, after = scored(tiny_model_dir, None), scored(tiny_model_dir, sup_adapter)
    assert after.nll < before.nll - 0.5
    assert after.cost < before.cost
    assert any("None" in g.text for g in after.generations)


def test_sup_warm_start_continues_from_an_adapter(tiny_model_dir, sup_adapter, tmp_path):  # noqa: F811
    cfg = SupConfig(**FAST, learning_rate=1e-12, max_steps=1)
    train_sup(tiny_model_dir, TRAIN, tmp_path / "again", cfg, init_adapter=sup_adapter)
    old, new = lora_tensors(sup_adapter), lora_tensors(tmp_path / "again")
    assert old.keys() == new.keys()
    assert all(float((old[k] - new[k]).abs().max()) < 1e-6 for k in old)


def test_sup_refuses_too_few_edits(tiny_model_dir, tmp_path):  # noqa: F811
    with pytest.raises(TooFewEdits, match="SUP needs at least 8 edits, have 3"):
        train_sup(tiny_model_dir, TRAIN[:3], tmp_path / "x", SupConfig())


# --- PREF ---------------------------------------------------------------------------------------------


def test_dpo_widens_the_chosen_rejected_margin(tiny_model_dir, tmp_path):  # noqa: F811
    cfg = PrefConfig(**FAST, learning_rate=1e-2, max_steps=12, sft_weight=0.0)
    result = train_pref(tiny_model_dir, TRAIN, tmp_path / "pref", cfg)
    assert result.metrics["rewards/margins"] > 0
    assert margin(tiny_model_dir, tmp_path / "pref") > margin(tiny_model_dir, None) + 1.0


def test_pref_from_sup_keeps_moving_away_from_sup(tiny_model_dir, sup_adapter, tmp_path):  # noqa: F811
    for reference in ("init", "base"):
        cfg = PrefConfig(**FAST, learning_rate=5e-3, max_steps=4, reference=reference)
        out = tmp_path / reference
        train_pref(tiny_model_dir, TRAIN, out, cfg, init_adapter=sup_adapter)
        sup, pref = lora_tensors(sup_adapter), lora_tensors(out)
        assert sup.keys() == pref.keys()  # the saved adapter is the policy alone, no "ref" copy
        assert max(float((sup[k] - pref[k]).abs().max()) for k in sup) > 1e-4


def test_pref_counts_only_edits_that_carry_a_preference(tiny_model_dir, tmp_path):  # noqa: F811
    ties = [replace(e, final=e.suggestion) for e in TRAIN]
    with pytest.raises(TooFewEdits, match="PREF needs at least 4 edits, have 2"):
        train_pref(tiny_model_dir, ties[:14] + TRAIN[:2], tmp_path / "x", PrefConfig(**FAST))


# --- Early --------------------------------------------------------------------------------------------


def test_early_picks_lambda_by_validation_log_loss(tiny_model_dir, tmp_path):  # noqa: F811
    # probe=0: every grid point trains on every edit, the best of them is kept as it is.
    cfg = EarlyConfig(**FAST, learning_rate=1e-2, max_steps=6, lambdas=[0.0, 2.0], betas=[0.1], probe=0)
    calls = []
    result = train_early(tiny_model_dir, TRAIN, VAL, tmp_path / "early", cfg, progress=lambda s, o: calls.append((s, o)))
    grid = result.metrics["grid"]
    assert [(g["lambda"], g["beta"]) for g in grid] == [(0.0, 0.1), (2.0, 0.1)]
    best = min(grid, key=lambda g: g["val_nll"])
    assert (result.metrics["lambda"], result.metrics["val_nll"]) == (best["lambda"], best["val_nll"])
    # The SFT term is what raises the likelihood of y′: the grid must see it.
    assert best["lambda"] == 2.0
    assert calls[-1] == (12, 12)  # progress spans the whole grid
    assert scored(tiny_model_dir, tmp_path / "early").nll == pytest.approx(best["val_nll"], rel=1e-3)


def test_early_probes_the_grid_on_part_of_the_edits_and_finishes_only_the_winner(tiny_model_dir, tmp_path):  # noqa: F811
    cfg = EarlyConfig(**FAST, learning_rate=1e-2, max_steps=6, lambdas=[0.0, 2.0], betas=[0.1])
    calls = []
    result = train_early(tiny_model_dir, TRAIN, VAL, tmp_path / "early", cfg, progress=lambda s, o: calls.append((s, o)))
    grid = result.metrics["grid"]
    # a third of the 16 edits and of the 6 steps for each point, then the winner's 4 steps on the rest
    assert [(g["lambda"], g["edits"], g["steps"]) for g in grid] == [(0.0, 5, 2), (2.0, 5, 2)]
    assert result.metrics["probe_edits"] == 5 and result.steps == 6
    assert result.metrics["lambda"] == min(grid, key=lambda g: g["val_nll"])["lambda"] == 2.0
    assert calls[-1] == (8, 8) and [s for s, _ in calls] == sorted(s for s, _ in calls)
    # The winner went on from its probe: the finished adapter scores what the metrics say, better
    # than where the choice was made.
    final = scored(tiny_model_dir, tmp_path / "early").nll
    assert final == pytest.approx(result.metrics["val_nll"], rel=1e-3)
    assert final < min(g["val_nll"] for g in grid) - 0.05


def test_early_probe_split():
    from training.early import probe_split

    edits = synthetic_edits(30)
    cfg = EarlyConfig(**FAST)
    probe, rest = probe_split(edits, cfg)
    assert len(probe) == 10 and len(rest) == 20
    assert sorted(e.id for e in probe + rest) == [e.id for e in edits]  # disjoint, together all
    assert probe_split(edits, cfg) == (probe, rest)  # seeded
    assert probe_split(edits, replace(cfg, seed=1))[0] != probe
    assert probe != edits[:10]  # a random part, not the oldest
    assert probe_split(edits, replace(cfg, lambdas=[1.0])) is None  # one point: nothing to choose
    assert probe_split(edits, replace(cfg, probe=0)) is None
    assert probe_split(edits[:10], cfg) is None  # 3 edits would not make one step of 4


def test_early_probe_keeps_the_whole_runs_learning_rate_schedule():
    from training.early import probe_schedule

    cfg = EarlyConfig()  # 1 epoch, 4 edits a step, lr 1e-4
    total, probe, rest_lr = probe_schedule(cfg, 151, 50)
    assert (total, probe) == (38, 13)  # 151 edits: 76 micro-batches of 2, 38 steps; a third of them
    assert rest_lr == pytest.approx(1e-4 * 25 / 38)  # where linear decay over 38 steps is after 13
    assert probe_schedule(cfg, 151, 151) == (38, 38, 1e-4)  # no probe: the run as it is
    assert probe_schedule(replace(cfg, max_steps=6), 16, 5)[:2] == (6, 2)
    from training.early import _stage_steps

    assert _stage_steps(cfg, 151, processes=4) == 10  # 4 processes: 19 micro-batches each, two a step


# --- validation helpers -------------------------------------------------------------------------------

REPEAT_CASES = [
    ("return x + 1", False),
    ("- a\n- b\n- c", False),
    ("foo bar baz foo bar baz foo bar baz", True),  # a 3-gram three times
    ("print(total)\nprint(total)", True),  # a line twice
    ("- \n- \n- \n- \n- \n- \n- \n- \n- \n- \n- \n- ", True),  # few distinct tokens
]


@pytest.mark.parametrize("text, expected", REPEAT_CASES)
def test_repeats(text, expected):
    assert evaluate.repeats(text) is expected


def _score(name, cost, nll=1.0, **rates) -> PolicyScore:
    return PolicyScore(name, nll=nll, cost=cost, n=10, tokens=50,
                       rates={"repeats": 0.0, "length": 0.0, "empty": 0.0, **rates})  # fmt: skip


def test_judge_leaves_out_degenerate_and_worse_policies():
    scores = {
        "base": _score("base", 0.5, nll=1.0, length=0.4),
        "sup": _score("sup", 0.3, nll=0.8),
        "pref": _score("pref", 0.2, nll=0.7, repeats=0.6),  # cheap but loops: the calibration run's failure
        "early": _score("early", 0.4, nll=1.2),  # cheaper answers, but y′ is less likely: worse
        "cost": _score("cost", 0.6, nll=0.9, length=0.5),  # runs to the limit about as often as the base
    }
    evaluate.judge(scores)
    assert {k: s.served for k, s in scores.items()} == {
        "base": True, "sup": True, "pref": False, "early": False, "cost": True,
    }  # fmt: skip
    assert scores["pref"].degenerate and "repeats" in scores["pref"].reason
    assert "worse than the base model on validation log-loss (1.200 > 1.000)" in scores["early"].reason
    assert "log-loss 0.900, base 1.000" in scores["cost"].reason  # a dearer answer, a likelier y′: served
    # One loop in four validation answers is 25%, but one answer: not enough to call a policy degenerate.
    few = {"base": replace(_score("base", 0.5), n=4), "sup": replace(_score("sup", 0.3, repeats=0.25), n=4),
           "pref": replace(_score("pref", 0.3, repeats=0.5), n=4)}  # fmt: skip
    evaluate.judge(few)
    assert few["sup"].served and not few["sup"].degenerate and few["pref"].degenerate


def test_judge_falls_back_to_capped_costs_without_a_log_loss():
    """A policy scored without tokens of y′ has no log-loss: it is judged on costs, capped so that a
    lower mean made of one outlier less does not beat a base model that is better on most edits."""
    capped = {"base": replace(_score("base", 3.0), capped_cost=0.5),
              "sup": replace(_score("sup", 2.0, nll=math.nan), capped_cost=0.7, tokens=0)}  # fmt: skip
    evaluate.judge(capped)
    assert not capped["sup"].served and "validation cost (0.700 > 0.500)" in capped["sup"].reason


def test_degenerate_rates_count_loops_limits_and_empty_answers():
    gens = [Generated("", "", "eos", False), Generated("x x x", "x x x", "length", True),
            Generated("ok", "ok", "stop", False), Generated("fine", "fine", "eos", False)]  # fmt: skip
    assert evaluate.degenerate_rates(gens) == {"repeats": 0.25, "length": 0.25, "empty": 0.25}


def test_validation_cuts_an_answer_as_the_logged_suggestion_was_cut(tiny_model_dir):  # noqa: F811
    """An editor suggestion stops at the end of its sentence; a whole answer (the bench's summaries) runs
    to end-of-text, and a function body to the first line at column 0 — else every policy's
    multi-sentence answer would be scored by its first sentence."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "First point here. Second point there.\nThird line."
    ids = tok.encode(text, add_special_tokens=False)
    md = Edit(id="m", prompt="Notes: ", prefix="Notes: ", suggestion="x", final=text, cost=1.0, char_cost=1.0,
              language="markdown")  # fmt: skip
    g = evaluate._finish(tok, md, ids, 999, set(), EVAL)
    assert g.text == "First point here." and g.stop_reason == "stop"
    g = evaluate._finish(tok, replace(md, bound="answer"), ids, 999, set(), EVAL)
    assert g.text == text and g.stop_reason == "length"
    body = "return a\n    + b\nprint(1)"
    py = replace(md, language="python", bound="function", prompt="def f(a, b):\n    ")
    g = evaluate._finish(tok, py, tok.encode(body, add_special_tokens=False), 999, set(), EVAL)
    assert g.text == "return a\n    + b" and g.stop_reason == "stop"


def test_batched_log_probabilities_match_one_at_a_time(tiny_model_dir):  # noqa: F811
    from training.lora import load_base

    model, tokenizer = load_base(tiny_model_dir)
    model.eval()
    edits = [TRAIN[0], replace(TRAIN[1], prompt="x" * 300, final="y"), replace(TRAIN[2], final="a much longer ending here")]
    batched = evaluate.completion_logprobs(model, tokenizer, edits, batch_size=3)
    single = [evaluate.completion_logprobs(model, tokenizer, [e], batch_size=1)[0] for e in edits]
    for b, s in zip(batched, single):
        assert len(b) == len(s)
        assert max(abs(x - y) for x, y in zip(b, s)) < 1e-3


def test_batched_generation_matches_one_at_a_time(tiny_model_dir, sup_adapter):  # noqa: F811
    from peft import PeftModel

    from training.lora import load_base

    model, tokenizer = load_base(tiny_model_dir)
    model = PeftModel.from_pretrained(model, str(sup_adapter)).eval()
    edits = [VAL[0], replace(VAL[1], prompt="x = 1\n" * 30 + VAL[1].prompt), replace(VAL[2], final="return")]
    batched = evaluate.generate(model, tokenizer, edits, cfg=EVAL)
    single = [evaluate.generate(model, tokenizer, [e], cfg=EVAL)[0] for e in edits]
    assert [(g.text, g.stop_reason) for g in batched] == [(g.text, g.stop_reason) for g in single]
    assert batched[0].text == WANTED and batched[0].stop_reason == "eos"


def test_scoring_and_generating_together_matches_each_alone(tiny_model_dir, sup_adapter):  # noqa: F811
    """Validation reads each prompt once for the log-loss and the greedy suggestion; it must give what
    scoring and generating separately give, on a batch with left padding and ragged completions."""
    from peft import PeftModel

    from training.lora import load_base

    model, tokenizer = load_base(tiny_model_dir)
    model.config.use_cache = True
    model = PeftModel.from_pretrained(model, str(sup_adapter)).eval()
    edits = [VAL[0], replace(VAL[1], prompt="x = 1\n" * 30 + VAL[1].prompt), replace(VAL[2], final="return")]
    edits += [replace(TRAIN[3], prompt="x")]  # a one-token prompt: nothing to cache before its last token
    together, gens = evaluate.score_and_generate(model, tokenizer, edits, cfg=EVAL)
    alone = evaluate.completion_logprobs(model, tokenizer, edits)
    assert [len(t) for t in together] == [len(a) for a in alone]
    for t, a in zip(together, alone):
        assert max(abs(x - y) for x, y in zip(t, a)) < 1e-3
    separate = evaluate.generate(model, tokenizer, edits, cfg=EVAL)
    assert [(g.text, g.stop_reason) for g in gens] == [(g.text, g.stop_reason) for g in separate]
    assert gens[0].text == WANTED


def test_mixture_log_loss_is_the_token_level_mixture():
    a = PolicyScore("a", 0, 0, n=1, tokens=2, token_logprobs=[[-1.0, -3.0]])
    b = PolicyScore("b", 0, 0, n=1, tokens=2, token_logprobs=[[-2.0, -0.5]])
    import math

    nll, tokens = evaluate.mixture_nll({"a": 0.5, "b": 0.5}, {"a": a, "b": b})
    expected = -(math.log(0.5 * math.exp(-1) + 0.5 * math.exp(-2)) + math.log(0.5 * math.exp(-3) + 0.5 * math.exp(-0.5))) / 2
    assert tokens == 2 and nll == pytest.approx(expected)


def test_the_mixture_is_judged_on_edits_its_weights_were_not_fitted_on():
    """Fitted and scored on the same edits, the Mixture's log-loss is at most its best component's by
    construction: held out, each edit is scored with weights fitted on the other edits."""
    from training.mixture import fit_mixture_weights

    a_lp = [[-0.1, -0.2], [-3.0, -2.5], [-0.3, -0.1, -0.2]]  # a explains edits 0 and 2
    b_lp = [[-2.0, -2.2], [-0.2, -0.1], [-2.5, -2.0, -3.0]]  # b explains edit 1 only
    parts = {name: PolicyScore(name, nll=0.0, cost=0.0, n=3, tokens=7, served=True, token_logprobs=lp)
             for name, lp in (("a", a_lp), ("b", b_lp))}  # fmt: skip
    nll, tokens = pipeline.held_out_mixture_nll(parts, folds=3)
    expected = 0.0
    for i in range(3):
        w = fit_mixture_weights({"a": [x for j, x in enumerate(a_lp) if j != i], "b": [x for j, x in enumerate(b_lp) if j != i]})
        expected -= sum(math.log(w["a"] * math.exp(x) + w["b"] * math.exp(y)) for x, y in zip(a_lp[i], b_lp[i]))
    assert tokens == 7 and nll == pytest.approx(expected / 7)
    in_sample, _ = evaluate.mixture_nll(fit_mixture_weights({"a": a_lp, "b": b_lp}), parts)
    assert nll > in_sample  # edit 1 is scored by weights fitted where a was always right
    # Components that agree: the weights cannot matter, and the held-out figure is theirs.
    same = {n: replace(s, token_logprobs=a_lp) for n, s in parts.items()}
    assert pipeline.held_out_mixture_nll(same)[0] == pytest.approx(-sum(map(sum, a_lp)) / 7)


# --- the pipeline -------------------------------------------------------------------------------------


def _db(path: Path, edits: list[Edit]) -> Path:
    from server.store import Store, SuggestionRecord

    with Store(path) as store:
        for e in edits:
            rec = SuggestionRecord(uri=f"file:///p/{e.id}.py", suggestion=e.suggestion, prompt=e.prompt,
                                   prefix=e.prefix, language=e.language, created_at=e.created_at)  # fmt: skip
            store.record_suggestion(rec)
            store.record_outcome(rec.id, e.kind, e.final, "idle", settled_at=e.created_at + 1)
    return path


def _fast_pipeline(learners) -> pipeline.PipelineConfig:
    cfg = pipeline.PipelineConfig(learners=learners)
    cfg.sup = SupConfig(**FAST, learning_rate=1e-2, max_steps=20)
    cfg.pref = PrefConfig(**FAST, learning_rate=1e-2, max_steps=3)
    cfg.early = EarlyConfig(**FAST, learning_rate=1e-2, max_steps=3, lambdas=[1.0])
    cfg.eval = EVAL
    return cfg


def test_pipeline_dry_run_says_what_each_learner_needs(tmp_path, tiny_model_dir):  # noqa: F811
    db = _db(tmp_path / "redline.db", synthetic_edits(12))
    cfg = pipeline.PipelineConfig(learners=["sup", "pref", "early"])
    result = pipeline.run(tiny_model_dir, db, cfg, versions_root=tmp_path / "v", dry_run=True)
    assert result.counts == {"loaded": 12, "kept": 12, "train": 8, "validation": 4}
    assert result.skipped == {}
    assert "would train sup, pref, early" in result.reason
    cfg.sup.min_edits = 9
    with pytest.raises(pipeline.NothingToTrain, match="SUP needs at least 9 edits, have 8"):
        pipeline.run(tiny_model_dir, db, replace(cfg, learners=["sup"]), versions_root=tmp_path / "v")
    assert versions.list_versions(tmp_path / "v") == []


def test_one_training_run_at_a_time(tmp_path, tiny_model_dir):  # noqa: F811
    db = _db(tmp_path / "redline.db", synthetic_edits(12))
    root = versions.versions_root(tmp_path / "v")
    with pipeline.training_lock(root):
        with pytest.raises(pipeline.TrainerBusy, match="in progress"):
            pipeline.run(tiny_model_dir, db, versions_root=root, dry_run=True)
    assert pipeline.run(tiny_model_dir, db, versions_root=root, dry_run=True).dry_run


def test_pipeline_writes_an_explained_version_and_activates_it(tmp_path, tiny_model_dir):  # noqa: F811
    edits = synthetic_edits(20) + [replace(synthetic_edits(1, start=50)[0], final="", kind="deleted")]
    db = _db(tmp_path / "redline.db", edits)
    stream = io.StringIO()
    root = tmp_path / "versions"
    result = pipeline.run(tiny_model_dir, db, _fast_pipeline(["sup", "pref"]), progress=Progress("json", stream),
                          versions_root=root)  # fmt: skip
    assert result.version and result.activated, result.reason
    v = versions.active(root)
    assert v.id == result.version and set(v.adapters) == {"sup", "pref"}
    assert set(v.validation) == {"base", "sup", "pref"}
    assert v.validation["sup"]["served"] and v.validation["sup"]["nll"] < v.validation["base"]["nll"]
    assert set(v.validation["sup"]) >= {"cost", "nll", "n", "degenerate", "served", "reason"}
    ids = v.read_json("edits.json")
    assert len(ids["train"]) == 16 and len(ids["validation"]) == 4 and not set(ids["train"]) & set(ids["validation"])
    assert ids["filter"]["dropped"]["deleted"] == 1
    config = v.read_json("train_config.json")
    assert config["configs"]["sup"]["max_steps"] == 20 and config["runs"]["sup"]["steps"] == 20
    assert v.manifest["base_model"] == str(tiny_model_dir)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all(e["type"] == "progress" and "stage" in e and "message" in e for e in events)
    stages = [e["stage"] for e in events]
    assert stages[:3] == ["load", "filter", "split"] and stages[-2:] == ["gate", "done"]
    sup_steps = [e for e in events if e["stage"] == "train" and e["learner"] == "sup" and e["of"]]
    assert sup_steps[-1]["step"] == sup_steps[-1]["of"] == 20 and sup_steps[-1]["percent"] == 100.0

    # A second run: the active version's best policy is scored on the new run's validation edits, and
    # the gate compares the two there.
    again = pipeline.run(tiny_model_dir, db, _fast_pipeline(["sup"]), versions_root=root)
    comparison = versions.load_version(again.version, root).read_json("comparison.json")
    assert comparison["against"] == v.id and comparison["n"] == 4
    assert again.activated == (again.validation["sup"]["nll"] <= comparison["nll"])


def test_incremental_retrain_continues_the_active_adapters_on_new_edits_only(tmp_path, tiny_model_dir):  # noqa: F811
    from safetensors.torch import load_file

    root = tmp_path / "versions"
    db = _db(tmp_path / "redline.db", synthetic_edits(20))
    cfg = _fast_pipeline(["sup", "early"])
    cfg.early = replace(cfg.early, lambdas=[0.0, 2.0], max_steps=2)
    cfg.force = True
    first = pipeline.run(tiny_model_dir, db, cfg, versions_root=root)
    assert first.activated, first.reason
    before = versions.active(root)
    chosen = before.read_json("train_config.json")["runs"]["early"]["metrics"]["lambda"]
    _db(db, synthetic_edits(10, start=200))  # ten new edits arrive
    cfg = _fast_pipeline(["sup", "early"])
    cfg.early = replace(cfg.early, lambdas=[0.0, 2.0], max_steps=1)
    cfg.sup = replace(cfg.sup, max_steps=1, learning_rate=1e-9)  # barely moves: what it starts from shows
    cfg.warm_start = cfg.incremental = True
    cfg.force = True
    result = pipeline.run(tiny_model_dir, db, cfg, versions_root=root)
    seen = set(before.read_json("edits.json")["train"])
    trained_on = set(versions.load_version(result.version, root).read_json("edits.json")["train"])
    assert trained_on and not trained_on & seen and result.counts["seen_before"] == len(seen) == 16
    assert len(trained_on) == result.counts["train"] == 30 - 6 - 16  # 6 newest validate
    old = load_file(str(before.adapters["sup"] / "adapter_model.safetensors"))
    new = load_file(str(versions.load_version(result.version, root).adapters["sup"] / "adapter_model.safetensors"))
    # Continued from the active adapter (a fresh one has its B matrices at zero).
    assert max((old[k] - new[k]).abs().max().item() for k in old) < 1e-3
    assert any(new[k].abs().max().item() > 1e-3 for k in new if "lora_B" in k)
    # Early keeps the λ the full run chose instead of training its grid again.
    config = versions.load_version(result.version, root).read_json("train_config.json")
    assert config["configs"]["early"]["lambdas"] == [chosen] and len(config["runs"]["early"]["metrics"]["grid"]) == 1
    assert config["configs"]["cost"]["eval_prompts"] == 0  # the greedy diagnostic is a full run's


def test_incremental_runs_pass_once_over_the_new_edits():
    cfg = pipeline.PipelineConfig()
    assert cfg.sup.epochs == 2.0 and cfg.cost.eval_prompts > 0
    inc = pipeline._incremental_learners(cfg)
    assert (inc.sup.epochs, inc.pref.epochs, inc.early.epochs, inc.cost.epochs) == (1.0, 1.0, 1.0, 1.0)
    assert inc.cost.eval_prompts == 0 and inc.sup.learning_rate == cfg.sup.learning_rate
    fixed = replace(cfg, sup=replace(cfg.sup, max_steps=5))  # a fixed step count is left as it is
    assert pipeline._incremental_learners(fixed).sup == fixed.sup


def test_pipeline_keeps_the_cost_model_and_report_beside_the_adapters(tmp_path, tiny_model_dir):  # noqa: F811
    from training.cost import CostConfig

    root = tmp_path / "versions"
    db = _db(tmp_path / "redline.db", synthetic_edits(12))
    cfg = _fast_pipeline(["sup", "cost"])
    cfg.cost = CostConfig(r=4, alpha=8, max_steps=2, samples=2, max_new_tokens=4, eval_prompts=1,
                          max_prompt_tokens=64, min_edits=4)  # fmt: skip
    cfg.force = True
    result = pipeline.run(tiny_model_dir, db, cfg, versions_root=root)
    v = versions.load_version(result.version, root)
    assert set(v.adapters) == {"sup", "cost"}
    report = v.read_json("cost_report.json")
    assert report["steps"] == 2 and report["train_edits"] == 8
    assert (v.path / "cost_model" / "cost_model.safetensors").is_file()


# --- the real default model (slow) --------------------------------------------------------------------


@pytest.mark.slow
def test_the_whole_pipeline_on_the_default_model(tmp_path, default_model_dir):
    """`python -m training train` as the server starts it, on ~30 edits of a user who always appends the
    same comment: every arm trains and is validated, SUP learns the habit, the version loads in the
    server's runtime. Few steps and short texts: about three minutes on a busy 2-core machine."""
    import os
    import subprocess
    import sys

    from server.runtime import Runtime

    names = "total count items values result data index key name size".split()
    edits = []
    for i in range(30):
        a, b = names[i % 10], names[(3 * i + 1) % 10]
        prompt = f'def combine_{i}({a}, {b}):\n    """Return the {a} with the {b}."""\n    '
        edits.append(Edit(id=f"r{i:02d}", prompt=prompt, prefix=prompt, suggestion=f"return {a} + {b}",
                          final=f"return {a} + {b}  # combined", cost=0.5, char_cost=0.3, language="python",
                          created_at=float(i)))  # fmt: skip
    home = tmp_path / "home"
    _db(home / "redline.db", edits)
    learners = ["sup", "pref", "early"] + (["mixture"] if "mixture" in pipeline.available_learners() else [])
    settings = {
        "split.val_fraction": 0.2,  # 24 to train on, 6 to validate
        "sup.max_steps": 6, "sup.learning_rate": 1e-3, "sup.r": 8, "sup.alpha": 16,
        "pref.max_steps": 3, "pref.r": 8, "pref.alpha": 16,
        "early.max_steps": 3, "early.lambdas": "1.0", "early.r": 8, "early.alpha": 16,
        "eval.max_new_tokens": 16, "eval.margin_tokens": 4,
    }  # fmt: skip
    args = ["--model", str(default_model_dir), "--learners", ",".join(learners), "--progress", "json"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    env = {**os.environ, "REDLINE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "training", "train", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    events = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert {e["learner"] for e in events if e["stage"] == "train"} >= {"sup", "pref", "early"}

    assert summary["skipped"] == {} and summary["counts"]["validation"] == 6
    val = summary["validation"]
    assert set(val) == {"base", *learners}
    assert val["sup"]["nll"] < val["base"]["nll"] - 0.3  # the habit is learned
    root = home / "models" / "versions"
    version = versions.load_version(summary["version"], root)
    assert set(version.adapters) == {"sup", "pref", "early"}
    served_trained = [p for p in version.served if p != "base"]
    assert summary["activated"] == bool(served_trained), summary["reason"]

    runtime = Runtime(default_model_dir)
    policies = runtime.use_version(version)
    assert set(policies) >= {"base", *[p for p in served_trained if p != "mixture"]}


def test_mixture_drops_components_it_barely_weighs_and_refits_the_rest():
    rng = random.Random(0)
    # a and b each explain half the tokens well; c explains none better than they do
    tokens_a = [[math.log(0.9) if t % 2 == 0 else math.log(0.1) for t in range(40)] for _ in range(6)]
    tokens_b = [[math.log(0.1) if t % 2 == 0 else math.log(0.9) for t in range(40)] for _ in range(6)]
    tokens_c = [[math.log(0.01 * (1 + rng.random())) for _ in range(40)] for _ in range(6)]

    def score(name, lp):
        return PolicyScore(policy=name, nll=0.0, cost=0.0, n=6, tokens=240, served=True, token_logprobs=lp)

    scores = {"a": score("a", tokens_a), "b": score("b", tokens_b), "c": score("c", tokens_c),
              "d": PolicyScore(policy="d", nll=0.0, cost=0.0, n=6, tokens=240, served=False, token_logprobs=tokens_c)}  # fmt: skip
    every = pipeline._fit_mixture(scores, pipeline.RunResult())
    assert set(every) == {"a", "b", "c"} and 0 < every["c"] < 0.03  # the prior keeps c in, barely
    result = pipeline.RunResult()
    pruned = pipeline._fit_mixture(scores, result, min_weight=0.03)
    assert set(pruned) == {"a", "b"} and sum(pruned.values()) == pytest.approx(1.0)
    assert pruned["a"] == pytest.approx(0.5, abs=0.02)  # refitted over what is left
    assert result.trained["mixture"]["dropped"] == {"c": every["c"]}
    assert pipeline.PipelineConfig().mixture_min_weight == 0.03
