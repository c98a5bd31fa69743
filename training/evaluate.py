"""Validation: how well a policy predicts the user's held-out edits, what it would suggest, and
whether it degenerated.

For each validation edit (x, y, y′):

- log-loss: the mean negative log-likelihood per token of y′ (and its end-of-text token) given x,
  over all validation tokens — what Early uses to choose λ and β, and the Mixture's objective;
- cost: the policy's greedy suggestion for x, cut as the logged suggestion was (`Edit.bound`: the
  editor's serving rules from `server.postprocess`, or a whole answer / a function body), against y′
  with the paper's cost (word-level Levenshtein / tokens of the suggestion,
  `server.capture.cost.word_cost`). Generation stops at the end-of-text token, a serving
  stop rule, or after as many tokens as y′ has plus a margin;
- degeneration, per suggestion: it repeats itself (a word 3-gram three times, or few distinct tokens),
  it ran to the length limit without stopping, or nothing was left to show.

The Mixture is scored the same way: its token-level NLL from the components' log-probabilities, its
cost from its own greedy suggestions (`evaluate_mixture`, decoded by `training.mixture`).

`judge` then leaves a policy out of serving when it degenerates (a rate above its limit and clearly
above the base model's own rate) or does worse than the base model on validation cost (each edit's
cost capped at 1, as the gate and the Late bandit count them).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from server.capture.cost import tokenize, word_cost
from server.postprocess import bound_stop, finalize, stop_at
from server.prompt import Context, build_context
from training import encode, threads
from training.data import Edit
from training.encode import Lengths

DEGENERATE_KINDS = ("repeats", "length", "empty")


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 8  # validation edits per forward pass
    margin_tokens: int = 8  # a suggestion may run this many tokens past the length of y′
    max_new_tokens: int = 128
    repeat_ngram: int = 3  # a word n-gram ...
    repeat_times: int = 3  # ... seen this many times is a loop
    min_distinct: float = 0.35  # or fewer distinct word tokens than this share (texts of 12+ tokens)
    # A policy degenerates when a rate exceeds its limit and the base model's own rate by `slack`.
    max_rates: tuple[tuple[str, float], ...] = (("repeats", 0.2), ("length", 0.5), ("empty", 0.5))
    slack: float = 0.15
    # ... and at least this many suggestions are degenerate: with four validation edits, one loop is
    # 25% of them, which says more about the edit than about the policy.
    min_degenerate: int = 2


@dataclass
class Generated:
    text: str  # what serving would show
    stopped: str  # decoded text up to the stop rule / end-of-text / budget, before clean-up
    stop_reason: str  # "eos" | "stop" | "length"
    repeats: bool


@dataclass
class PolicyScore:
    policy: str
    nll: float  # mean negative log-likelihood per token of y′ (nats)
    cost: float  # mean edit cost of the greedy suggestion against y′
    n: int  # validation edits
    tokens: int  # validation tokens the NLL is averaged over
    rates: dict[str, float] = field(default_factory=dict)  # share of suggestions per DEGENERATE_KINDS
    degenerate: bool = False
    served: bool = False
    reason: str = ""
    token_logprobs: list[list[float]] = field(default_factory=list, repr=False)  # per edit, per token of y′
    generations: list[Generated] = field(default_factory=list, repr=False)
    capped_cost: float = math.nan  # mean of each cost capped at 1, as the Late bandit counts costs

    def as_json(self) -> dict:
        return {
            "cost": round(self.cost, 6),
            "capped_cost": None if math.isnan(self.capped_cost) else round(self.capped_cost, 6),
            "nll": round(self.nll, 6),
            "n": self.n,
            "tokens": self.tokens,
            "rates": {k: round(v, 4) for k, v in self.rates.items()},
            "degenerate": self.degenerate,
            "served": self.served,
            "reason": self.reason,
        }


def context_for(edit: Edit) -> Context:
    """The serving context of an edit, rebuilt from the stored document window."""
    if edit.prefix or edit.suffix:
        return build_context(edit.prefix + edit.suffix, len(edit.prefix), edit.language or "plaintext")
    return build_context(edit.prompt, len(edit.prompt), edit.language or "plaintext")


def eos_ids(tokenizer, model) -> set[int]:
    from server.runtime import _eos_ids  # the same end-of-text set serving stops on

    return _eos_ids(tokenizer, model)


def _batches(items: list, size: int):
    for i in range(0, len(items), max(size, 1)):
        yield items[i : i + size]


def _left_pad(seqs: list[list[int]], pad_id: int):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def completion_logprobs(model, tokenizer, edits: list[Edit], lengths: Lengths = Lengths(), batch_size: int = 8):
    """Per edit, the log-probability of each token of y′ (then end-of-text) given x, as trained."""
    import torch

    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encode.eos_id(tokenizer)
    out: list[list[float]] = []
    with torch.inference_mode():
        for batch in _batches(edits, batch_size):
            threads.tick()
            prompts = [encode.prompt_ids(tokenizer, e.prompt, lengths.max_prompt_tokens) for e in batch]
            comps = [encode.completion_ids(tokenizer, e.final, lengths.max_completion_tokens) for e in batch]
            ids, mask, positions = _left_pad([p + c for p, c in zip(prompts, comps)], pad)
            keep = max(len(c) for c in comps) + 1
            logits = model(
                input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                logits_to_keep=keep, use_cache=False,
            ).logits  # fmt: skip
            for i, c in enumerate(comps):
                rows = logits[i, keep - 1 - len(c) : keep - 1].float().log_softmax(-1)
                target = torch.tensor(c, device=rows.device).unsqueeze(-1)
                out.append(rows.gather(-1, target).squeeze(-1).tolist())
    return out


def mean_nll(token_logprobs: list[list[float]]) -> tuple[float, int]:
    """(mean NLL per token, number of tokens) over all edits."""
    total = sum(len(t) for t in token_logprobs)
    if not total:
        return math.nan, 0
    return -sum(sum(t) for t in token_logprobs) / total, total


def repeats(text: str, cfg: EvalConfig = EvalConfig()) -> bool:
    """A loop: a word n-gram seen `repeat_times` times, a non-trivial line twice, or few distinct tokens."""
    toks = tokenize(text)
    n = cfg.repeat_ngram
    grams = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    if grams and max(grams.values()) >= cfg.repeat_times:
        return True
    lines = [ln.strip() for ln in text.split("\n") if len(ln.strip()) >= 6]
    if len(lines) != len(set(lines)):
        return True
    return len(toks) >= 12 and len(set(toks)) / len(toks) < cfg.min_distinct


def _budget(tokenizer, e: Edit, lengths: Lengths, cfg: EvalConfig) -> int:
    """Tokens a suggestion may take: as many as y′ has, plus a margin."""
    n = len(encode.completion_ids(tokenizer, e.final, lengths.max_completion_tokens, eos=False))
    return min(n + cfg.margin_tokens, cfg.max_new_tokens)


def _finish(tokenizer, e: Edit, new: list[int], budget: int, stops: set[int], cfg: EvalConfig) -> Generated:
    """Cut generated ids at end-of-text or the budget, then apply the serving rules."""
    new = new[:budget]
    ended = next((j for j, t in enumerate(new) if t in stops), None)
    if ended is not None:
        new = new[:ended]
    raw = tokenizer.decode(new, skip_special_tokens=True)
    ctx, rule = stop_rule(e)
    cut = rule(raw) if rule is not None else None
    if cut is not None:
        reason, stopped = "stop", raw[:cut]
    else:
        reason, stopped = ("eos" if ended is not None else "length"), raw
    text = finalize(ctx, stopped) if ctx is not None else stopped.rstrip()
    return Generated(text, stopped, reason, repeats(stopped, cfg))


def stop_rule(e: Edit):
    """(serving context or None, rule(text) -> cut index or None) for how `e`'s suggestion was cut.

    Cut the way the suggestion being validated against was cut: an editor suggestion by the editor's
    rules at its cursor, a whole answer (or a function body) by its own rule — else a multi-sentence
    answer would be scored by its first sentence and every policy would look worse."""
    if e.bound in ("", "editor"):
        ctx = context_for(e)
        return ctx, (lambda t: stop_at(ctx, t))
    return None, bound_stop(e.bound)


def _greedy(budgets: list[int], stops: set[int], pad: int):
    """Greedy decoding for a batch: as many tokens as its longest budget, stopping at end-of-text."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max(budgets), do_sample=False, eos_token_id=sorted(stops), pad_token_id=pad,
    )  # fmt: skip


def generate(model, tokenizer, edits: list[Edit], lengths: Lengths = Lengths(), cfg: EvalConfig = EvalConfig()):
    """Greedy suggestions of `model` (batched, left-padded) for each edit's prompt, cut by the
    serving rules."""
    import torch

    dev = next(model.parameters()).device
    stops = eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encode.eos_id(tokenizer)
    out: list[Generated] = []
    with torch.inference_mode():
        for batch in _batches(edits, cfg.batch_size):
            threads.tick()
            prompts = [encode.prompt_ids(tokenizer, e.prompt, lengths.max_prompt_tokens) for e in batch]
            budgets = [_budget(tokenizer, e, lengths, cfg) for e in batch]
            ids, mask, _ = _left_pad(prompts, pad)
            seqs = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                  generation_config=_greedy(budgets, stops, pad))  # fmt: skip
            for i, e in enumerate(batch):
                out.append(_finish(tokenizer, e, seqs[i, ids.shape[1] :].tolist(), budgets[i], stops, cfg))
    return out


def generate_with(decode, model, tokenizer, edits: list[Edit], lengths: Lengths = Lengths(),
                  cfg: EvalConfig = EvalConfig()) -> list[Generated]:  # fmt: skip
    """Like `generate`, one edit at a time through `decode(prompt_ids, max_new_tokens) -> new ids`
    (a decoder that is not a plain transformers model, such as the Mixture's)."""
    stops = eos_ids(tokenizer, model)
    out = []
    for e in edits:
        threads.tick()
        budget = _budget(tokenizer, e, lengths, cfg)
        new = decode(encode.prompt_ids(tokenizer, e.prompt, lengths.max_prompt_tokens), budget)
        out.append(_finish(tokenizer, e, list(new), budget, stops, cfg))
    return out


def score_and_generate(model, tokenizer, edits: list[Edit], lengths: Lengths = Lengths(),
                       cfg: EvalConfig = EvalConfig()) -> tuple[list[list[float]], list[Generated]]:  # fmt: skip
    """`completion_logprobs` and `generate` together, reading each prompt once instead of twice.

    Per batch: the prompts (left-padded) but their last token go into a key/value cache; the last
    prompt token followed by y′ is scored from it (log-probabilities of y′ and its end-of-text); the
    cache is cut back to the prompt and greedy decoding continues from it. The prompt is most of the
    tokens, so validation does about half the work; the results are those of the two functions
    (tests/test_learners.py compares them)."""
    import torch
    from transformers import DynamicCache

    dev = next(model.parameters()).device
    stops = eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encode.eos_id(tokenizer)
    scores: list[list[float]] = []
    gens: list[Generated] = []
    with torch.inference_mode():
        for batch in _batches(edits, cfg.batch_size):
            threads.tick()
            prompts = [encode.prompt_ids(tokenizer, e.prompt, lengths.max_prompt_tokens) for e in batch]
            comps = [encode.completion_ids(tokenizer, e.final, lengths.max_completion_tokens) for e in batch]
            budgets = [_budget(tokenizer, e, lengths, cfg) for e in batch]
            ids, mask, positions = _left_pad(prompts, pad)
            ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)
            width = ids.shape[1]
            cache = DynamicCache(config=model.config)
            if width > 1:
                model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                      cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
            # score: the last prompt token, then y′ (right-padded; causal attention keeps the padding
            # after each completion out of its own tokens' view)
            span = max(len(c) for c in comps)
            tail = torch.full((len(batch), 1 + span), pad, dtype=torch.long, device=dev)
            tail_mask = torch.zeros_like(tail)
            tail[:, 0], tail_mask[:, 0] = ids[:, -1], 1
            for i, c in enumerate(comps):
                tail[i, 1 : 1 + len(c)] = torch.tensor(c, dtype=torch.long)
                tail_mask[i, 1 : 1 + len(c)] = 1
            tail_pos = positions[:, -1:] + torch.arange(1 + span, device=dev)
            logits = model(input_ids=tail, attention_mask=torch.cat([mask[:, :-1], tail_mask], 1),
                           position_ids=tail_pos, cache=cache, use_cache=True).logits  # fmt: skip
            for i, c in enumerate(comps):
                rows = logits[i, : len(c)].float().log_softmax(-1)
                scores.append(rows.gather(-1, torch.tensor(c, device=rows.device).unsqueeze(-1)).squeeze(-1).tolist())
            # generate: from the prompt's cache (its last token is read again as generation's first input)
            cache.crop(-(1 + span))
            seqs = model.generate(input_ids=ids, attention_mask=mask, cache=cache,
                                  generation_config=_greedy(budgets, stops, pad))  # fmt: skip
            for i, e in enumerate(batch):
                gens.append(_finish(tokenizer, e, seqs[i, width:].tolist(), budgets[i], stops, cfg))
    return scores, gens


def degenerate_rates(gens: list[Generated]) -> dict[str, float]:
    n = max(len(gens), 1)
    return {
        "repeats": sum(g.repeats for g in gens) / n,
        "length": sum(g.stop_reason == "length" for g in gens) / n,
        "empty": sum(not g.text.strip() for g in gens) / n,
    }


def evaluate_policy(
    model,
    tokenizer,
    val_edits: list[Edit],
    *,
    policy: str = "",
    lengths: Lengths = Lengths(),
    config: EvalConfig = EvalConfig(),
) -> PolicyScore:
    """Log-loss of y′, cost of greedy suggestions against y′, and degeneration rates on `val_edits`,
    for the policy `model` is now (a peft model with its adapter set, or the base model)."""
    was_training = model.training
    model.eval()
    try:
        logprobs, gens = score_and_generate(model, tokenizer, val_edits, lengths, config)
    finally:
        model.train(was_training)
    return policy_score(policy, val_edits, logprobs, gens)


def policy_score(policy: str, val_edits: list[Edit], logprobs: list[list[float]] | None,
                 gens: list[Generated], nll: tuple[float, int] | None = None) -> PolicyScore:  # fmt: skip
    """A policy's validation figures from its log-probabilities of each y′ (or its `nll` as
    (mean, tokens), for a policy scored otherwise) and its suggestions."""
    nll, tokens = nll if nll is not None else mean_nll(logprobs or [])
    costs = [word_cost(g.text, e.final) for g, e in zip(gens, val_edits)]
    return PolicyScore(
        policy=policy,
        nll=nll,
        cost=sum(costs) / max(len(costs), 1),
        n=len(val_edits),
        tokens=tokens,
        rates=degenerate_rates(gens),
        token_logprobs=logprobs or [],
        generations=gens,
        capped_cost=sum(min(c, 1.0) for c in costs) / max(len(costs), 1),
    )


def judge(scores: dict[str, PolicyScore], config: EvalConfig = EvalConfig(), base: str = "base") -> None:
    """Mark each policy degenerate/served with a reason. The base model is the reference and always
    served (it is what runs without any version).

    "Worse than the base model" is judged on the log-loss of y′, not on the cost of the greedy answer
    against y′. Every y′ is the user's edit of the answer they were shown, so it keeps that answer's
    wording wherever the user had nothing to fix: the policy that wrote it (the base model, for the
    first version) matches y′ by construction, and any other policy pays for every harmless difference
    in wording. The benchmark measured the bias (docs/bench, "Does validation predict the online
    cost?"): the cost ordered a quarter of policy pairs as the users' own costs did and would have
    refused SUP in 14 of 15 runs that it won; the log-loss ordered three quarters and picked within
    0.01 of the best. Policies scored without a log-loss (none of its tokens) are judged on the cost."""
    ref = scores.get(base)
    for name, s in scores.items():
        if name == base:
            s.served, s.degenerate = True, False
            s.reason = "the base model (reference)"
            continue
        bad = []
        for kind, limit in config.max_rates:
            floor = ref.rates.get(kind, 0.0) + config.slack if ref else 0.0
            count = round(s.rates.get(kind, 0.0) * s.n)
            if s.rates.get(kind, 0.0) > max(limit, floor) and count >= config.min_degenerate:
                bad.append(f"{kind} {s.rates[kind]:.0%}")
        s.degenerate = bool(bad)
        measure, mine, theirs = _gate_figures(s, ref)
        if bad:
            s.served, s.reason = False, "degenerate: " + ", ".join(bad)
        elif ref is not None and mine > theirs:
            s.served, s.reason = False, f"worse than the base model on validation {measure} ({mine:.3f} > {theirs:.3f})"
        else:
            s.served = True
            s.reason = "passed validation" + (f" ({measure} {mine:.3f}, base {theirs:.3f})" if ref else "")


def _gate_figures(s: PolicyScore, ref: PolicyScore | None) -> tuple[str, float, float]:
    """(measure, policy's figure, base's figure): the log-loss of y′ when both have one, otherwise each
    edit's cost capped at 1 (server.versions.gate_cost says why capped)."""
    if ref is not None and math.isfinite(s.nll) and math.isfinite(ref.nll) and s.tokens and ref.tokens:
        return "log-loss", s.nll, ref.nll
    cost = lambda x: x.cost if math.isnan(x.capped_cost) else x.capped_cost  # noqa: E731
    return "cost", cost(s), (cost(ref) if ref is not None else math.nan)


def mixture_nll(weights: dict[str, float], scores: dict[str, PolicyScore]) -> tuple[float, int]:
    """Mean NLL per token of y′ under the token-level mixture Σ α_k π_k(y′_t | x, y′_<t)."""
    names = [k for k, a in weights.items() if a > 0]
    total_a = sum(weights[k] for k in names)
    logs = {k: math.log(weights[k] / total_a) for k in names}
    nll, tokens = 0.0, 0
    for i in range(scores[names[0]].n):
        for t in range(len(scores[names[0]].token_logprobs[i])):
            terms = [logs[k] + scores[k].token_logprobs[i][t] for k in names]
            top = max(terms)
            nll -= top + math.log(sum(math.exp(x - top) for x in terms))
            tokens += 1
    return (nll / tokens if tokens else math.nan), tokens


def evaluate_mixture(
    decode,
    model,
    tokenizer,
    val_edits: list[Edit],
    weights: dict[str, float],
    scores: dict[str, PolicyScore],
    *,
    policy: str = "mixture",
    lengths: Lengths = Lengths(),
    config: EvalConfig = EvalConfig(),
) -> PolicyScore:
    """The Mixture on validation: its token-level NLL from the components' scores, and the cost of its
    own greedy suggestions through `decode(prompt_ids, max_new_tokens)` (training.mixture's decoder)."""
    if not weights or any(k not in scores for k in weights):
        raise ValueError(f"a mixture needs scores for every component: {sorted(weights)} vs {sorted(scores)}")
    gens = generate_with(decode, model, tokenizer, val_edits, lengths, config)
    return policy_score(policy, val_edits, None, gens, nll=mixture_nll(weights, scores))
