"""COST: learn a model of the user's edit cost, then move the policy towards suggestions it rates cheap.

The research this follows ("Principled Fine-tuning of LLMs from User-Edits", NeurIPS 2025) analyses
this learner and never runs it. Two stages:

1. Cost model f(x, y) ≈ c. Features come from the FROZEN base model: x and y are tokenized as serving
   tokenizes them (prompt ids, then the suggestion's ids appended, `training.encode`), one forward
   pass, and the last hidden state is averaged over y's positions; log(1 + tokens of y) is appended
   because averaging forgets length, and many users' costs depend on it. On these features sit K
   ridge-regression heads, each fitted on a bootstrap resample of the logged edits. The pessimistic
   cost f̄ is their MAX: where the edits pin the cost down the heads agree; where a sample looks like
   nothing in the log they disagree and the max is high. That is the upper confidence bound the
   paper's analysis asks for, and it keeps the policy from chasing the regression's blind spots.
2. Policy gradient. Minimise E_π[f̄(x, y)] + β·KL(π‖π_ref) over the logged contexts x, with a LoRA
   adapter whose reference is the same model with the adapter disabled (no second copy). Per step:
   k completions per prompt are sampled, each scored with the sequence reward
   r = −f̄(x, y) − β·Σ_t (log π − log π_ref)(y_t), and the REINFORCE loss uses a leave-one-out
   baseline (each sample is compared with the mean reward of the other k−1 samples of its prompt).
   The frozen forward pass that gives log π_ref also gives the features for f̄: one extra forward
   per batch, not two. Sampling is our own short loop with a key/value cache rather than trl's RLOO
   or GRPO: they would need a reward function that reruns the model, a second reference pass, and
   `generate`'s per-step overhead, which dominates on a CPU (DESIGN.md: 430–550 s per 100 prompts).

Everything here runs on the device of `training.lora.device()`; nothing assumes a CPU.
"""

from __future__ import annotations

import json
import math
import random
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from training import encode, threads
from training.lora import LoraTrainConfig

#: progress(event): {"stage": "features" | "cost_model" | "policy" | "eval" | "done", ...}
ProgressFn = Callable[[dict], None]

FEATURE_KIND = "mean_last_hidden_over_y+log1p_tokens"
MODEL_FILE = "cost_model.safetensors"
META_FILE = "cost_model.json"


class EditLike(Protocol):
    prompt: str
    suggestion: str
    final: str
    cost: float


@dataclass
class CostConfig(LoraTrainConfig):
    """The COST learner's settings. `batch_size` is prompts per policy step; `epochs` counts passes
    over the logged contexts (steps = epochs × prompts / batch_size, at most `step_budget`, unless
    `max_steps` > 0)."""

    heads: int = 5  # bootstrap cost heads; the pessimistic cost is their max
    ridge: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)  # penalties tried; leave-one-out error picks
    beta: float = 0.05  # KL weight: how far from the base the policy may move for a lower predicted cost
    samples: int = 4  # completions per prompt (k); the leave-one-out baseline needs at least 2
    temperature: float = 1.0  # sampling temperature; 1.0 keeps the gradient an unbiased estimate
    max_new_tokens: int = 24  # tokens sampled per completion; generation dominates the step time
    eval_prompts: int = 4  # validation prompts decoded greedily before and after (0: skip); a diagnostic
    max_grad_norm: float = 1.0
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0  # samples are drawn without dropout; the gradient must see the same policy
    learning_rate: float = 1e-4
    epochs: float = 1.0
    batch_size: int = 2
    # At most this many policy steps a run (0: no limit). A step samples and scores k completions of
    # each of its prompts, about 9 s on 2 cores; a pass over every logged context grows with the
    # history, so past the budget a run visits a random part of it (the cost model still fits on all).
    step_budget: int = 32
    max_completion_tokens: int = 128  # tokens of a logged suggestion that its features read
    min_edits: int = 8

    def __post_init__(self) -> None:
        if self.heads < 1:
            raise ValueError("heads must be at least 1")
        if self.samples < 2:
            raise ValueError("samples must be at least 2: the leave-one-out baseline compares samples")
        if self.beta < 0:
            raise ValueError("beta must be >= 0")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.step_budget < 0:
            raise ValueError("step_budget must be >= 0 (0: no limit)")
        if not self.ridge or min(self.ridge) <= 0:
            raise ValueError("ridge needs at least one positive penalty")
        self.ridge = tuple(float(r) for r in self.ridge)


# --- features ---------------------------------------------------------------------------------------


def pool_features(hidden: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Features of one completion from the last hidden state of one row, (T, H) -> (H + 1,).

    `start` is the first completion position, `length` its token count. An empty completion reads
    the last prompt position (what the model had in mind before saying nothing)."""
    if length > 0:
        pooled = hidden[start : start + length].mean(0)
    else:
        pooled = hidden[start - 1]
    extra = torch.tensor([math.log1p(length)], dtype=pooled.dtype, device=pooled.device)
    return torch.cat([pooled, extra])


@torch.no_grad()
def edit_features(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    cfg: CostConfig,
    batch_size: int = 8,
) -> torch.Tensor:
    """Features (n, H + 1) of (prompt, suggestion) pairs under `model` as it is (pass the base, or a
    peft model inside `disable_adapter()`)."""
    device = next(model.parameters()).device
    rows = []
    for prompt, y in pairs:
        p = encode.prompt_ids(tokenizer, prompt, cfg.max_prompt_tokens)
        c = encode.completion_ids(tokenizer, y, cfg.max_completion_tokens, eos=False)
        rows.append((p, c))
    feats: list[torch.Tensor | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
    pad = encode.eos_id(tokenizer)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        width = max(len(rows[i][0]) + len(rows[i][1]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for j, i in enumerate(idx):  # right padding: causal attention never reads it
            seq = rows[i][0] + rows[i][1]
            ids[j, : len(seq)] = torch.tensor(seq)
            mask[j, : len(seq)] = 1
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                    use_cache=False, logits_to_keep=1)
        hidden = out.hidden_states[-1]
        for j, i in enumerate(idx):
            feats[i] = pool_features(hidden[j].float(), len(rows[i][0]), len(rows[i][1])).cpu()
    if not feats:
        return torch.zeros((0, model.config.hidden_size + 1))
    return torch.stack(feats)  # type: ignore[arg-type]


# --- the cost model ---------------------------------------------------------------------------------


@dataclass
class CostModel:
    """K ridge heads on standardised features; `predict` gives their max (pessimistic), mean or all."""

    mean: torch.Tensor  # (D,) feature means of the training edits
    scale: torch.Tensor  # (D,) feature standard deviations (floored)
    weights: torch.Tensor  # (K, D)
    bias: torch.Tensor  # (K,)
    meta: dict[str, Any] = field(default_factory=dict)  # ridge, train mean cost, feature kind, ...

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        costs: Sequence[float] | torch.Tensor,
        heads: int = 5,
        ridge: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0),
        seed: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> CostModel:
        x = features.detach().to(torch.float64).cpu()
        y = torch.as_tensor(costs, dtype=torch.float64).cpu()
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} costs")
        if x.shape[0] < 2:
            raise ValueError("a cost model needs at least 2 edits")
        mean = x.mean(0)
        scale = x.std(0, unbiased=False).clamp_min(1e-6)
        z = (x - mean) / scale
        lam, loo = _pick_ridge(z, y, ridge)
        gen = torch.Generator().manual_seed(seed)
        n = z.shape[0]
        ws, bs = [], []
        for k in range(heads):
            # Head 0 sees every edit; the others see bootstrap resamples. The spread among heads is the
            # uncertainty the max turns into pessimism.
            idx = torch.arange(n) if k == 0 else torch.randint(0, n, (n,), generator=gen)
            w, b = _ridge(z[idx], y[idx], lam)
            ws.append(w)
            bs.append(b)
        info = {
            "feature": FEATURE_KIND,
            "ridge": lam,
            "loo_mse": loo,
            "heads": heads,
            "n_train": n,
            "train_mean_cost": float(y.mean()),
        }
        info.update(meta or {})
        return cls(mean=mean, scale=scale, weights=torch.stack(ws), bias=torch.stack(bs), meta=info)

    def predict(self, features: torch.Tensor, reduce: str = "max") -> torch.Tensor:
        """Predicted costs, clamped at 0: `max` (pessimistic, (n,)), `mean` ((n,)) or `none` ((K, n))."""
        z = (features.detach().to(torch.float64).cpu() - self.mean) / self.scale
        per_head = (z @ self.weights.T + self.bias).T.clamp_min(0.0)
        if reduce == "max":
            return per_head.max(0).values
        if reduce == "mean":
            return per_head.mean(0)
        if reduce == "none":
            return per_head
        raise ValueError(f"reduce must be max, mean or none, not {reduce!r}")

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean, "scale": self.scale, "weights": self.weights, "bias": self.bias}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / MODEL_FILE))
        (folder / META_FILE).write_text(json.dumps({"format": 1, **self.meta}, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> CostModel:
        from safetensors.torch import load_file

        folder = Path(folder)
        t = load_file(str(folder / MODEL_FILE))
        meta = json.loads((folder / META_FILE).read_text())
        if meta.pop("format", None) != 1:
            raise ValueError(f"{folder / META_FILE}: unknown cost model format")
        return cls(mean=t["mean"], scale=t["scale"], weights=t["weights"], bias=t["bias"], meta=meta)


def _ridge(z: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression with an unpenalised intercept, through the thin SVD (any n against D)."""
    zm, ym = z.mean(0), y.mean()
    u, s, vt = torch.linalg.svd(z - zm, full_matrices=False)
    w = vt.T @ ((s / (s * s + lam)) * (u.T @ (y - ym)))
    return w, ym - zm @ w


def _pick_ridge(z: torch.Tensor, y: torch.Tensor, grid: Sequence[float]) -> tuple[float, float]:
    """The penalty with the lowest leave-one-out squared error (closed form: r_i / (1 − H_ii))."""
    zc, yc = z - z.mean(0), y - y.mean()
    u, s, _ = torch.linalg.svd(zc, full_matrices=False)
    uy = u.T @ yc
    n = z.shape[0]
    best = (float(grid[0]), math.inf)
    for lam in grid:
        shrink = s * s / (s * s + lam)
        fitted = u @ (shrink * uy)
        hat = (u * u) @ shrink + 1.0 / n  # the intercept's share of the hat matrix
        loo = ((yc - fitted) / (1.0 - hat).clamp_min(1e-6)).pow(2).mean().item()
        if loo < best[1]:
            best = (float(lam), loo)
    return best


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged (for Spearman's correlation)."""
    order = torch.argsort(v)
    ranks = torch.empty_like(v, dtype=torch.float64)
    sorted_v = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def cost_model_report(model: CostModel, features: torch.Tensor, costs: Sequence[float]) -> dict[str, Any]:
    """How well the cost model fits held-out edits: mean absolute error of the heads' mean and of the
    pessimistic max, against a constant (the training edits' mean cost), and Spearman's correlation."""
    y = torch.as_tensor(costs, dtype=torch.float64)
    if len(y) == 0:
        return {"n": 0}
    mean_pred = model.predict(features, "mean")
    ucb = model.predict(features, "max")
    constant = float(model.meta.get("train_mean_cost", float(y.mean())))
    return {
        "n": len(y),
        "mae": float((mean_pred - y).abs().mean()),
        "mae_pessimistic": float((ucb - y).abs().mean()),
        "mae_constant": float((constant - y).abs().mean()),
        "spearman": _pearson(_ranks(mean_pred), _ranks(y)) if len(y) > 2 else 0.0,
        "mean_cost": float(y.mean()),
        "mean_predicted": float(mean_pred.mean()),
        "mean_pessimistic": float(ucb.mean()),
    }


# --- sampling and the policy-gradient step ----------------------------------------------------------


def _prefill(model, prompt: list[int], k: int, hidden: bool = False):
    """Read the prompt once (one row) and repeat its key/value cache for k completions. The prompt is
    most of every sequence: reading it once instead of k times is most of a step's saving."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=torch.tensor([prompt], dtype=torch.long, device=device),
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
        output_hidden_states=hidden,
    )
    cache.batch_repeat_interleave(k)
    return cache, out


def _sample_loop(model, cache, logits: torch.Tensor, k: int, max_new_tokens: int, eos_ids: set[int],
                 temperature: float, generator: torch.Generator | None) -> tuple[torch.Tensor, list[int]]:
    """Sample k completions from a cache that holds the prompt k times and the logits after it."""
    device = logits.device
    new = torch.zeros((k, max_new_tokens), dtype=torch.long, device=device)
    lengths = [max_new_tokens] * k
    done = [False] * k
    for t in range(max_new_tokens):
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, -1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)[:, 0]
        else:
            token = logits.argmax(-1)
        new[:, t] = token
        for i, tok in enumerate(token.tolist()):
            if not done[i] and tok in eos_ids:
                done[i], lengths[i] = True, t + 1
        if all(done):
            return new[:, : t + 1], lengths
        if t + 1 < max_new_tokens:
            logits = model(input_ids=token[:, None], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return new, lengths


@torch.no_grad()
def sample_completions(
    model, prompt: list[int], k: int, max_new_tokens: int, eos_ids: set[int], temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """k completions of one prompt: (k, L) token ids, and each one's length counted up to and
    including its end-of-text token (tokens after it are padding). temperature 0 = greedy."""
    cache, out = _prefill(model, prompt, k)
    return _sample_loop(model, cache, out.logits[:, -1].expand(k, -1), k, max_new_tokens, eos_ids, temperature,
                        generator)  # fmt: skip


def _detached_copy(cache):
    """The same keys and values, out of the autograd graph (sampling must not extend it)."""
    from transformers import DynamicCache

    copy = DynamicCache()
    for i, layer in enumerate(cache.layers):
        copy.update(layer.keys.detach(), layer.values.detach(), i)
    return copy


class LeanSampler:
    """Samples the k completions of each of a policy step's prompts with the server's lean decoder
    (server.fast_decoder) instead of transformers' generic forward: the same weights, the adapter's
    current A and B applied per row, each prompt's keys and values copied from the step's own prompt
    pass, the prompts side by side. A step of the generic
    forward spent most of its time dispatching (about 130 ms a token for 4 rows on 2 cores, against a
    weight read of a fraction of that), and sampling was over half of a COST step.

    Built on the base model before peft wraps it; `None` from `for_model` for a model the lean decoder
    does not run (the generic path then samples)."""

    def __init__(self, weights, adapter_config: dict) -> None:
        self.weights = weights
        self.config = adapter_config

    @classmethod
    def for_model(cls, model, cfg: CostConfig):
        from server import fast_decoder

        if fast_decoder.supports(model) is not None or next(model.parameters()).device.type != "cpu":
            return None
        return cls(fast_decoder.Weights(model), {"r": cfg.r, "lora_alpha": cfg.alpha})

    @torch.no_grad()
    def sample(self, policy, caches: list, logits: list[torch.Tensor], k: int, max_new_tokens: int,
               eos_ids: set[int], temperature: float, generator: torch.Generator | None) -> list[tuple[torch.Tensor, list[int]]]:  # fmt: skip
        """k completions of each prompt, all prompts' rows side by side in one decoder: `caches[p]`
        holds prompt p (one row), `logits[p]` (k, vocab) what follows it. Prompts of different
        lengths are left-padded. A step for 8 rows costs about what a step for 4 costs on this class
        of machine (`benchmarks/decode_rows.py`), so a step's prompts sample together.
        Returns (ids, lengths) per prompt, as `_sample_loop` gives them for one."""
        from server.fast_decoder import FastDecoder
        from server.lora import fuse

        live = {n: p.detach() for n, p in policy.named_parameters() if ".lora_A." in n or ".lora_B." in n}
        lora = fuse(self.config, live, self.weights.shapes, self.weights.dtype, "the COST adapter")
        sizes = [c.get_seq_length() for c in caches]
        width = max(sizes)
        decoder = FastDecoder(self.weights, max_len=width + max_new_tokens, row_loras=[lora] * (k * len(caches)))
        for p, (cache, size) in enumerate(zip(caches, sizes)):
            rows = slice(p * k, (p + 1) * k)
            for li, layer in enumerate(cache.layers):
                decoder.k_cache[li, rows, :, width - size : width] = layer.keys[0].detach()
                decoder.v_cache[li, rows, :, width - size : width] = layer.values[0].detach()
        decoder.left_pad([width - size for size in sizes for _ in range(k)])
        decoder.length = width

        def step(input_ids, **_):  # what the sampling loop reads: model(input_ids=...).logits[:, -1]
            logits = decoder.forward(input_ids)
            return types.SimpleNamespace(logits=logits.view(input_ids.shape[0], 1, -1))  # one row comes back (vocab,)

        new, lengths = _sample_loop(step, None, torch.cat(logits), k * len(caches), max_new_tokens, eos_ids,
                                    temperature, generator)  # fmt: skip
        out = []
        for p in range(len(caches)):
            mine = lengths[p * k : (p + 1) * k]
            out.append((new[p * k : (p + 1) * k, : max(mine)], mine))
        return out


def sample_with_logprobs(policy, prompt: list[int], k: int, max_new_tokens: int, eos_ids: set[int],
                         temperature: float, generator: torch.Generator | None, sampler: LeanSampler | None = None):  # fmt: skip
    """k sampled completions of one prompt and their per-token log π: `sample_many_with_logprobs` for one."""
    return next(sample_many_with_logprobs(policy, [prompt], k, max_new_tokens, eos_ids, temperature, generator,
                                          sampler))  # fmt: skip


def sample_many_with_logprobs(policy, prompts: list[list[int]], k: int, max_new_tokens: int, eos_ids: set[int],
                              temperature: float, generator: torch.Generator | None, sampler: LeanSampler | None = None):  # fmt: skip
    """For each prompt, k sampled completions and their per-token log π (differentiable, zero after
    each one's end), from ONE read of the prompt: its cache, built with gradients, serves sampling
    (detached) and then the scoring pass that the gradient flows through. Reading it separately for
    each was a third of a step. `sampler` samples every prompt's rows side by side on the lean
    decoder; without it, transformers' forward samples one prompt at a time.

    A generator: each prompt's scoring pass runs when its result is asked for, so a caller that
    takes the backward pass before asking for the next holds one scoring graph at a time."""
    passes = [_prefill(policy, prompt, 1) for prompt in prompts]
    firsts = [head.logits[:, -1].detach().expand(k, -1) for _, head in passes]
    if sampler is not None:
        samples = sampler.sample(policy, [c for c, _ in passes], firsts, k, max_new_tokens, eos_ids, temperature,
                                 generator)  # fmt: skip
    else:
        samples = []
        with torch.no_grad():
            for (cache, _), first in zip(passes, firsts):
                sampling = _detached_copy(cache)
                sampling.batch_repeat_interleave(k)
                samples.append(_sample_loop(policy, sampling, first, k, max_new_tokens, eos_ids, temperature, generator))
    for (cache, head), (new, lengths) in zip(passes, samples):
        cache.batch_repeat_interleave(k)
        out = policy(input_ids=new, cache=cache, use_cache=True)
        logits = torch.cat([head.logits[:, -1:].expand(k, -1, -1), out.logits[:, :-1]], 1)
        yield new, lengths, _token_logprobs(logits, new) * _completion_mask(new, lengths)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]


def _completion_mask(new: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """1 for each completion's tokens up to and including its end, 0 for the padding after it."""
    steps = torch.arange(new.shape[1], device=new.device)[None, :]
    return (steps < torch.tensor(lengths, device=new.device)[:, None]).float()


def _forward_completions(model, prompt: list[int], new: torch.Tensor, hidden: bool = False):
    """Logits predicting each completion token (k, L, V) and, if asked, the last hidden state at the
    last prompt position followed by the completion positions (k, L + 1, H). The prompt is read once.
    Padding sits only after a completion's end, where causal attention never lets a real token see
    it: no attention mask is needed."""
    k = new.shape[0]
    cache, head = _prefill(model, prompt, k, hidden=hidden)
    out = model(input_ids=new, cache=cache, use_cache=True, output_hidden_states=hidden)
    logits = torch.cat([head.logits[:, -1:].expand(k, -1, -1), out.logits[:, :-1]], 1)
    if not hidden:
        return logits, None
    states = torch.cat([head.hidden_states[-1][:, -1:].expand(k, -1, -1), out.hidden_states[-1]], 1)
    return logits, states


@torch.no_grad()
def _frozen_pass(policy, prompt: list[int], new: torch.Tensor, lengths: list[int], eos_ids: set[int]):
    """With the adapter disabled: per-token log π_ref of k completions, and their cost features."""
    with policy.disable_adapter():
        logits, states = _forward_completions(policy, prompt, new, hidden=True)
    ref_lp = _token_logprobs(logits, new) * _completion_mask(new, lengths)
    # Features read the completion's text: a final end-of-text token is a decision, not text.
    text_len = [n - 1 if n and int(new[i, n - 1]) in eos_ids else n for i, n in enumerate(lengths)]
    feats = torch.stack([pool_features(states[i].float(), 1, text_len[i]).cpu() for i in range(len(lengths))])
    return ref_lp, feats


def policy_step(policy, optimizer, cost_model: CostModel, prompts: list[list[int]], eos_ids: set[int],
                cfg: CostConfig, generator: torch.Generator, sampler: LeanSampler | None = None) -> dict[str, float]:
    """One REINFORCE update with a leave-one-out baseline over `prompts` (lists of token ids)."""
    threads.tick()
    optimizer.zero_grad(set_to_none=True)
    costs, kls, rewards = [], [], []
    scale = 1.0 / (len(prompts) * cfg.samples)
    policy.train()  # no dropout (CostConfig.dropout is 0): samples come from the policy as it serves
    sampled = sample_many_with_logprobs(policy, prompts, cfg.samples, cfg.max_new_tokens, eos_ids, cfg.temperature,
                                        generator, sampler)  # fmt: skip
    for prompt, (new, lengths, lp) in zip(prompts, sampled):
        ref_lp, feats = _frozen_pass(policy, prompt, new, lengths, eos_ids)
        f_bar = cost_model.predict(feats, "max").to(lp.device, torch.float32)
        kl = (lp.detach() - ref_lp).sum(1)  # one-sample estimate of KL(π‖π_ref) for each completion
        reward = -f_bar - cfg.beta * kl
        baseline = (reward.sum() - reward) / (len(reward) - 1)
        advantage = reward - baseline
        loss = -(advantage * lp.sum(1)).sum() * scale
        loss.backward()
        costs.append(float(f_bar.mean()))
        kls.append(float(kl.mean()))
        rewards.append(float(reward.mean()))
    params = [p for p in policy.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
    optimizer.step()
    policy.eval()
    n = len(prompts)
    return {"cost": sum(costs) / n, "kl": sum(kls) / n, "reward": sum(rewards) / n, "grad_norm": grad_norm}


@torch.no_grad()
def greedy_predicted_cost(policy, tokenizer, cost_model: CostModel, prompts: Sequence[str], cfg: CostConfig,
                          adapter: bool = True, sampler: LeanSampler | None = None) -> float:  # fmt: skip
    """Mean pessimistic predicted cost of the greedy completions of `prompts` (with the adapter, or
    the base with it disabled). `sampler` decodes the prompts side by side on the lean decoder (with
    the adapter only)."""
    from contextlib import nullcontext

    eos_ids = {encode.eos_id(tokenizer)}
    ids = [encode.prompt_ids(tokenizer, text, cfg.max_prompt_tokens) for text in prompts]
    if sampler is not None and adapter:
        passes = [_prefill(policy, prompt, 1) for prompt in ids]
        completions = sampler.sample(policy, [c for c, _ in passes], [h.logits[:, -1] for _, h in passes], 1,
                                     cfg.max_new_tokens, eos_ids, 0.0, None)  # fmt: skip
    else:
        completions = []
        for prompt in ids:
            with nullcontext() if adapter else policy.disable_adapter():
                completions.append(sample_completions(policy, prompt, 1, cfg.max_new_tokens, eos_ids, 0.0))
    values = []
    for prompt, (new, lengths) in zip(ids, completions):
        _, feats = _frozen_pass(policy, prompt, new, lengths, eos_ids)
        values.append(float(cost_model.predict(feats, "max")[0]))
    return sum(values) / max(len(values), 1)


# --- the learner ------------------------------------------------------------------------------------


def policy_steps(cfg: CostConfig, contexts: int) -> int:
    """Policy steps of a run over `contexts` logged contexts."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    steps = max(1, math.ceil(cfg.epochs * contexts / cfg.batch_size))
    return min(steps, cfg.step_budget) if cfg.step_budget > 0 else steps


def _usable(edits: Sequence[EditLike]) -> list[EditLike]:
    return [e for e in edits if e.cost is not None and math.isfinite(float(e.cost))]


def train_cost(
    base_model_dir: Path,
    train: Sequence[EditLike],
    val: Sequence[EditLike],
    out_dir: Path,
    config: CostConfig | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Fit the cost model on `train`, run the policy gradient on `train`'s contexts, and write
    `out_dir/adapter` (LoRA, peft format), `out_dir/cost_model` and `out_dir/cost_report.json`
    (config, held-out fit on `val`, predicted cost of greedy outputs before and after, timings).
    Returns the adapter folder: the policy to serve."""
    from training import data
    from training.lora import device, load_base, peft_model, save_adapter

    cfg = config or CostConfig()
    emit = progress or (lambda event: None)
    train, val = _usable(train), _usable(val)
    data.require("cost", max(cfg.min_edits, 2), len(train))
    out_dir = Path(out_dir)
    started = time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    model, tokenizer = load_base(base_model_dir)
    model.to(device()).eval()
    emit({"stage": "features", "edits": len(train) + len(val)})
    x_train = edit_features(model, tokenizer, [(e.prompt, e.suggestion) for e in train], cfg)
    x_val = edit_features(model, tokenizer, [(e.prompt, e.suggestion) for e in val], cfg)
    features_s = time.perf_counter() - started

    cost_model = CostModel.fit(
        x_train, [e.cost for e in train], heads=cfg.heads, ridge=cfg.ridge, seed=cfg.seed,
        meta={"base_model": Path(base_model_dir).name},
    )
    fit_report = cost_model_report(cost_model, x_val, [e.cost for e in val])
    emit({"stage": "cost_model", **fit_report})

    sampler = LeanSampler.for_model(model, cfg)  # before peft wraps the model's layers
    policy = peft_model(model, cfg)
    policy.eval()
    eos_ids = {encode.eos_id(tokenizer)}
    eval_prompts = [e.prompt for e in val[: cfg.eval_prompts]]
    before = greedy_predicted_cost(policy, tokenizer, cost_model, eval_prompts, cfg, sampler=sampler) if eval_prompts else None

    contexts = [encode.prompt_ids(tokenizer, e.prompt, cfg.max_prompt_tokens) for e in train]
    steps = policy_steps(cfg, len(contexts))
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    queue: list[int] = []
    curve = []
    policy_started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = []
        while len(batch) < min(cfg.batch_size, len(contexts)):
            if not queue:  # a fresh shuffled pass over the logged contexts
                queue = list(range(len(contexts)))
                rng.shuffle(queue)
            batch.append(contexts[queue.pop()])
        stats = policy_step(policy, optimizer, cost_model, batch, eos_ids, cfg, generator, sampler)
        curve.append(stats)
        emit({"stage": "policy", "step": step, "steps": steps,
              "elapsed_s": time.perf_counter() - policy_started, **stats})
    policy_s = time.perf_counter() - policy_started

    after = greedy_predicted_cost(policy, tokenizer, cost_model, eval_prompts, cfg, sampler=sampler) if eval_prompts else None
    emit({"stage": "eval", "greedy_cost_before": before, "greedy_cost_after": after})

    save_adapter(policy, out_dir / "adapter")
    cost_model.meta["validation"] = fit_report
    cost_model.save(out_dir / "cost_model")
    report = {
        "config": asdict(cfg),
        "train_edits": len(train),
        "train_ids": [getattr(e, "id", None) for e in train],
        "val_edits": len(val),
        "cost_model": fit_report,
        "greedy_pessimistic_cost": {"before": before, "after": after, "prompts": len(eval_prompts)},
        "steps": steps,
        "contexts": {"logged": len(contexts), "visited": min(len(contexts), steps * cfg.batch_size)},
        "curve": curve,
        "seconds": {"features": features_s, "policy": policy_s, "total": time.perf_counter() - started},
    }
    (out_dir / "cost_report.json").write_text(json.dumps(report, indent=1, default=str))
    emit({"stage": "done", "seconds": report["seconds"]["total"]})
    return out_dir / "adapter"
