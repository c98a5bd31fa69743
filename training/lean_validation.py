"""Validation on the server's lean decoder: every policy of a run is one row of one batch per held-out
edit, instead of one policy after another through transformers' generic forward.

Why: a decoding step reads the base weights once for all its rows, and on this class of machine a step
for 8 rows costs under twice a step for 1 (`benchmarks/decode_rows.py`); validating seven policies one
after another read the weights seven times for every token. Side by side, the rows also share one
prompt (no padding between edits of different lengths) and each edit decodes only as far as its own
budget, not the longest of a batch of edits.

Per edit (x, y, y′), for every row:
1. read the prompt but its last token into the row's key/value cache (each adapter changes the keys
   and values, so a row's cache is its own);
2. read the prompt's last token followed by y′: the log-probability of each token of y′ and its
   end-of-text (what Early and the Mixture fit on); the logits after the prompt's last token are also
   the first step of greedy decoding;
3. cut the cache back to the prompt and decode greedily. A row stops at end-of-text, at the edit's
   budget, or as soon as the serving rule cuts its text (`server.postprocess.stop_at` is built to be
   asked after every token: what it cuts stays cut, so the rest would never be shown), and finished
   rows leave the batch.

Mixtures decode the same way with a group of rows, the components, all fed the group's token: the
argmax of Σ α_k softmax(logits_k). A policy alone is a group of one row.

The figures equal `training.evaluate.score_and_generate` run per policy (tests/test_lean_validation.py
holds them to it); models or adapters the lean decoder does not run are validated the generic way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from training import encode, threads
from training.data import Edit
from training.encode import Lengths
from training.evaluate import EvalConfig, Generated, _budget, _finish, stop_rule


@dataclass
class Group:
    """Rows decoded as one answer: one policy (one row, no weights) or a token-level mixture."""

    rows: list[int]  # indices into the row list of the decoder
    alphas: torch.Tensor | None = None  # mixture weights, summing to 1, one per row


def supported(model) -> str | None:
    """None when validation can run on the lean decoder for `model`, else why not."""
    from server import fast_decoder

    if next(model.parameters()).device.type != "cpu":
        return "the lean decoder runs on the CPU"
    return fast_decoder.supports(model)


def load_policies(weights, adapters: Mapping[str, Path]) -> dict[str, object]:
    """{name: FusedLora} for adapter folders (raises server.lora.AdapterError for one it cannot serve)."""
    from server.lora import load_adapter

    return {name: load_adapter(Path(folder), weights.shapes, weights.dtype) for name, folder in adapters.items()}


def score_and_generate(weights, policies: Mapping[str, object | None], tokenizer, edits: Sequence[Edit],
                       stops: set[int], lengths: Lengths = Lengths(), cfg: EvalConfig = EvalConfig(),
                       progress=None) -> dict[str, tuple[list[list[float]], list[Generated]]]:  # fmt: skip
    """Per policy (a FusedLora, or None for the base model): the log-probabilities of each edit's y′
    (then end-of-text) and its greedy suggestion for each edit, cut as serving would cut it.
    `progress(done, total)` is called after each edit."""
    names = list(policies)
    rows = [policies[n] for n in names]
    groups = [Group([i]) for i in range(len(names))]
    out = {n: ([], []) for n in names}
    for k, e in enumerate(edits):
        threads.tick()
        logprobs, gens = _edit(weights, rows, groups, tokenizer, e, stops, lengths, cfg, score=True)
        for i, n in enumerate(names):
            out[n][0].append(logprobs[i])
            out[n][1].append(gens[i])
        if progress:
            progress(k + 1, len(edits))
    return out


def generate_mixtures(weights, mixtures: Mapping[str, Mapping[str, float]], policies: Mapping[str, object | None],
                      tokenizer, edits: Sequence[Edit], stops: set[int], lengths: Lengths = Lengths(),
                      cfg: EvalConfig = EvalConfig(), progress=None) -> dict[str, list[Generated]]:  # fmt: skip
    """Greedy suggestions of token-level mixtures {name: {policy: α}} over `policies`, all decoded
    side by side (two mixtures that share a component still give it a row each: their texts differ)."""
    rows, groups, names = [], [], list(mixtures)
    for name in names:
        parts = [(p, float(a)) for p, a in mixtures[name].items() if float(a) > 0]
        if not parts or any(p not in policies for p, _ in parts):
            raise ValueError(f"mixture {name}: needs positive weights on known policies, got {dict(mixtures[name])}")
        alphas = torch.tensor([a for _, a in parts], dtype=torch.float32)
        groups.append(Group(list(range(len(rows), len(rows) + len(parts))), alphas / alphas.sum()))
        rows.extend(policies[p] for p, _ in parts)
    out: dict[str, list[Generated]] = {n: [] for n in names}
    for k, e in enumerate(edits):
        threads.tick()
        _, gens = _edit(weights, rows, groups, tokenizer, e, stops, lengths, cfg, score=False)
        for n, g in zip(names, gens):
            out[n].append(g)
        if progress:
            progress(k + 1, len(edits))
    return out


@torch.inference_mode()
def _edit(weights, rows: list, groups: list[Group], tokenizer, e: Edit, stops: set[int], lengths: Lengths,
          cfg: EvalConfig, score: bool) -> tuple[list[list[float]], list[Generated]]:  # fmt: skip
    from server.fast_decoder import FastDecoder

    prompt = encode.prompt_ids(tokenizer, e.prompt, lengths.max_prompt_tokens)
    comp = encode.completion_ids(tokenizer, e.final, lengths.max_completion_tokens) if score else []
    budget = _budget(tokenizer, e, lengths, cfg)
    decoder = FastDecoder(weights, max_len=len(prompt) + max(len(comp), budget) + 1,
                          row_loras=rows if any(r is not None for r in rows) else None,
                          batch=len(rows))  # fmt: skip
    if len(prompt) > 1:
        decoder.forward(prompt[:-1])
    feed = [prompt[-1]] + comp[:-1]  # the prompt's last token, then y′ but its last token
    logits = _by_row(decoder.forward(torch.tensor([feed] * len(rows)), all_positions=True), 3)
    logprobs = []
    if score:
        target = torch.tensor(comp).expand(len(rows), -1)
        logprobs = torch.log_softmax(logits.float(), -1).gather(-1, target[..., None])[..., 0].tolist()
    decoder.crop(len(prompt))
    new = _greedy(decoder, logits[:, 0], groups, tokenizer, e, stops, budget)
    return logprobs, [_finish(tokenizer, e, ids, budget, stops, cfg) for ids in new]


def _greedy(decoder, logits: torch.Tensor, groups: list[Group], tokenizer, e: Edit, stops: set[int],
            budget: int) -> list[list[int]]:  # fmt: skip
    """Each group's greedy ids from `logits` (rows, vocab) after the prompt; finished groups leave."""
    _, rule = stop_rule(e)
    new: list[list[int]] = [[] for _ in groups]
    live = list(range(len(groups)))  # groups still decoding, in the order of the decoder's rows
    while live:
        feed, still, at = [], [], 0
        for g in live:
            group = groups[g]
            width = len(group.rows)
            part = logits[at : at + width]
            at += width
            if group.alphas is None:
                token = int(part[0].argmax())
            else:
                token = int((group.alphas @ torch.softmax(part.float(), -1)).argmax())
            new[g].append(token)
            if token in stops or len(new[g]) >= budget or _cut(tokenizer, rule, new[g]):
                continue
            still.append(g)
            feed.extend([token] * width)
        if not still:
            break
        if still != live:  # keep the rows of the groups that go on, in order
            keep, at = [], 0
            for g in live:
                width = len(groups[g].rows)
                if g in still:
                    keep.extend(range(at, at + width))
                at += width
            decoder.keep(keep)
        live = still
        logits = _by_row(decoder.forward(torch.tensor(feed)[:, None]), 2)
    return new


def _cut(tokenizer, rule, ids: list[int]) -> bool:
    """Whether the serving rule has cut the text so far. A trailing U+FFFD is half a character still
    being decoded, not a bad character: it is left out of the question."""
    if rule is None:
        return False
    return rule(tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")) is not None


def _by_row(t: torch.Tensor, dims: int) -> torch.Tensor:
    """The decoder drops the row axis for a batch of one; put it back."""
    return t.unsqueeze(0) if t.dim() < dims else t
