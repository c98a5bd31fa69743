"""Mixture: one policy that mixes the trained policies' next-token distributions with convex weights α.

π_α(y_t | x, y_<t) = Σ_k α_k π_k(y_t | x, y_<t), decoded greedily. The weights are fitted on the
validation edits by EM on their likelihood under the mixture: for every token of every held-out y′,
the responsibility of policy k is α_k π_k(y′_t) / Σ_j α_j π_j(y′_t), and the new α is the average
responsibility (plus a small pseudo-count per policy, below). Each EM step cannot lower the
likelihood, and the optimum is interior whenever the policies are right about different tokens — the
usual case: SUP copies the user's wording, PREF avoids what the user removes, the base knows the
language.

Why not fit α on the expected edit cost instead: for a mixture over whole responses, E_{y∼Σα_kπ_k}[c]
= Σ_k α_k E_{π_k}[c] is LINEAR in α, so its minimum sits on a vertex — all weight on the learner that
happened to look best on a small validation set, which is the single-learner bet the ensemble exists to
avoid. The log-likelihood is concave in α and rewards covering every policy's strengths.

All K policies are LoRA adapters on one base, so their distributions come from ONE forward pass over a
batch of K copies of the sequence with peft's mixed-adapter inference (`adapter_names=[...]`, one name
per row; "base" is the base model with no adapter). DESIGN.md measured three adapters at 97 ms a
decoding step against 57 ms for one.

`MixtureDecoder` needs only torch and a peft model: serving can use it as it is (the server never
imports `training`, so it would move next to the runtime when the server wires it in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from training import encode

BASE = "base"  # the name of the base policy (no adapter); peft calls it "__base__"


def _peft_name(name: str) -> str:
    return "__base__" if name == BASE else name


# --- fitting the weights ----------------------------------------------------------------------------


@dataclass
class MixtureFit:
    names: list[str]
    weights: list[float]  # α, same order as names, sums to 1
    loglik: float  # mean log-likelihood per validation token under the mixture (nats)
    policy_loglik: dict[str, float]  # the same figure for each policy alone
    tokens: int
    iterations: int
    converged: bool

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def by_name(self) -> dict[str, float]:
        return dict(zip(self.names, self.weights))


def fit_mixture(
    logprobs: Sequence[torch.Tensor],
    names: Sequence[str],
    prior: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> MixtureFit:
    """EM for the weights of a token-level mixture.

    `logprobs[e]` is a (K, T_e) tensor: log π_k(y′_t | x, y′_<t) for each policy k and each token t of
    validation edit e (`policy_logprobs` computes them). `prior` is a pseudo-count of tokens added to
    every policy (MAP under a Dirichlet(1 + prior) prior): no weight reaches exactly 0, so a policy
    that a few hundred validation tokens did not favour still gets a say, and the fit is defined
    even with no validation tokens (uniform). `tol` is on the per-token log-likelihood (nats)."""
    k = len(names)
    if k == 0:
        raise ValueError("a mixture needs at least one policy")
    rows = [torch.as_tensor(lp, dtype=torch.float64) for lp in logprobs]
    for lp in rows:
        if lp.dim() != 2 or lp.shape[0] != k:
            raise ValueError(f"each edit's log-probabilities must be (K={k}, T), got {tuple(lp.shape)}")
    table = torch.cat(rows, 1) if rows else torch.zeros((k, 0), dtype=torch.float64)
    n = table.shape[1]
    alpha = torch.full((k,), 1.0 / k, dtype=torch.float64)
    last = -math.inf
    iterations, converged = 0, n == 0
    while not converged and iterations < max_iter:
        iterations += 1
        joint = table + alpha.log()[:, None]  # log α_k π_k(y′_t)
        norm = torch.logsumexp(joint, 0)  # log of the mixture's probability of each token
        resp = (joint - norm).exp()
        alpha = (resp.sum(1) + prior) / (n + k * prior)
        ll = float(norm.mean())
        converged = abs(ll - last) < tol
        last = ll
    final = float(torch.logsumexp(table + alpha.log()[:, None], 0).mean()) if n else 0.0
    single = {name: float(table[i].mean()) if n else 0.0 for i, name in enumerate(names)}
    return MixtureFit(
        names=list(names),
        weights=[float(a) for a in alpha],
        loglik=final,
        policy_loglik=single,
        tokens=n,
        iterations=iterations,
        converged=converged,
    )


# --- per-policy log-probabilities in one pass -------------------------------------------------------


def load_policies(base_model_dir: Path, adapters: dict[str, Path]):
    """(peft model with every adapter loaded under its name, tokenizer), in eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from server import model_store

    if not adapters:
        raise ValueError("no adapters to load")
    if BASE in adapters:
        raise ValueError(f"{BASE!r} names the base model; give adapters other names")
    model_store.offline()
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, local_files_only=True, dtype=torch.float32)
    items = list(adapters.items())
    model = PeftModel.from_pretrained(base, str(items[0][1]), adapter_name=items[0][0])
    for name, path in items[1:]:
        model.load_adapter(str(path), adapter_name=name)
    return model.eval(), tokenizer


@torch.no_grad()
def policy_logprobs(
    model,
    tokenizer,
    names: Sequence[str],
    edits: Sequence,
    max_prompt_tokens: int = 384,
    max_completion_tokens: int = 128,
) -> list[torch.Tensor]:
    """For each edit (anything with .prompt and .final), a (K, T) tensor of log π_k(y′_t | x, y′_<t)
    over y′'s tokens and its end-of-text token (where y′ stops is part of what the user wanted),
    from one batched forward of K rows with `adapter_names`. Tokenized as serving and training
    tokenize (`training.encode`)."""
    model.eval()  # peft refuses mixed-adapter batches in training mode
    device = next(model.parameters()).device
    rows = [_peft_name(n) for n in names]
    out = []
    for e in edits:
        p = encode.prompt_ids(tokenizer, e.prompt, max_prompt_tokens)
        c = encode.completion_ids(tokenizer, e.final, max_completion_tokens, eos=True)
        ids = torch.tensor([p + c] * len(rows), dtype=torch.long, device=device)
        logits = model(input_ids=ids, adapter_names=rows, use_cache=False, logits_to_keep=len(c) + 1).logits
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        target = torch.tensor(c, device=device)[None, :, None].expand(len(rows), -1, 1)
        out.append(lp.gather(-1, target)[..., 0].cpu())
    return out


def fit_mixture_weights(logprobs: Mapping[str, Sequence[Sequence[float]]], prior: float = 1.0) -> dict[str, float]:
    """Weights by policy name from `logprobs[policy][i]`: the per-token log-probabilities of
    validation edit i's y′ (the same tokens, in the same order, for every policy)."""
    names = list(logprobs)
    if not names:
        raise ValueError("a mixture needs at least one policy")
    n = len(logprobs[names[0]])
    if any(len(logprobs[k]) != n for k in names):
        raise ValueError("every policy must score the same validation edits")
    rows = []
    for i in range(n):
        lengths = {len(logprobs[k][i]) for k in names}
        if len(lengths) != 1:
            raise ValueError(f"validation edit {i}: policies scored different numbers of tokens {sorted(lengths)}")
        rows.append(torch.tensor([list(logprobs[k][i]) for k in names], dtype=torch.float64).reshape(len(names), -1))
    return fit_mixture(rows, names, prior=prior).by_name


def fit_mixture_on_edits(model, tokenizer, names: Sequence[str], val_edits: Sequence, prior: float = 1.0,
                         **lengths) -> MixtureFit:
    """`policy_logprobs` of the validation edits in one batched pass each, then `fit_mixture`."""
    return fit_mixture(policy_logprobs(model, tokenizer, names, val_edits, **lengths), names, prior=prior)


# --- decoding ---------------------------------------------------------------------------------------


class MixtureDecoder:
    """Greedy decoding from Σ_k α_k π_k with one forward per step over K rows, one per adapter.

    Every row holds the same sequence; each row's key/value cache is its own (the adapters change
    the keys and values). The next token maximises the mixed probability, not any single policy's."""

    def __init__(self, model, names: Sequence[str], weights: Sequence[float]) -> None:
        if len(names) != len(weights) or not names:
            raise ValueError("one weight per policy, at least one policy")
        w = torch.tensor([float(x) for x in weights], dtype=torch.float32)
        if (w < 0).any() or float(w.sum()) <= 0:
            raise ValueError("mixture weights must be non-negative and not all zero")
        self.model = model.eval()
        self.names = list(names)
        self.rows = [_peft_name(n) for n in names]
        self.device = next(model.parameters()).device
        self.weights = (w / w.sum()).to(self.device)
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        self.ids: list[int] = []

    @torch.no_grad()
    def probs(self, feed: Sequence[int]) -> torch.Tensor:
        """Read `feed` after the tokens already read; return the mixed next-token distribution (V,)."""
        if not feed:
            raise ValueError("feed at least one token")
        ids = torch.tensor([list(feed)] * len(self.rows), dtype=torch.long, device=self.device)
        logits = self.model(
            input_ids=ids, cache=self.cache, use_cache=True, adapter_names=self.rows, logits_to_keep=1
        ).logits[:, -1]
        self.ids.extend(feed)
        return self.weights @ torch.softmax(logits.float(), -1)

    def step(self, feed: Sequence[int]) -> int:
        """One decoding step: read `feed`, return the greedy token of the mixture."""
        return int(self.probs(feed).argmax())

    def generate(self, prompt: Sequence[int], max_new_tokens: int, eos_ids: set[int] | None = None) -> list[int]:
        """Greedy completion of `prompt` (token ids), without its end-of-text token."""
        self.reset()
        out: list[int] = []
        feed = list(prompt)
        for _ in range(max_new_tokens):
            token = self.step(feed)
            if eos_ids and token in eos_ids:
                break
            out.append(token)
            feed = [token]
        return out
