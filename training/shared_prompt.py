"""Training forwards that skip the work the loss never reads.

trl scores a batch with a fused LM head (`trl.trainer.utils.add_fused_lm_head`): the backbone runs over
every row, then the 49,152-word head projects positions into per-token log-probabilities. Two things in
it cost a CPU run for nothing:

- Off a Triton device it projects every position, the prompt's too, although only the completion's
  labels count (a prompt of 384 tokens against a completion of 40: nine tenths of the head's work, about
  a fifth of the forward, and its backward again). Here only the positions with a label are projected.
- DPO's batch is [chosen rows; rejected rows], each row the prompt then a completion: every prompt runs
  through the model twice, for the policy and again for the reference. Here each pair runs as one
  sequence, prompt + chosen + rejected, with an attention mask in which the rejected tokens see the
  prompt but not the chosen ones, and positions that restart after the prompt. Each row's hidden states
  are exactly those of the unpacked row; the prompt's are computed once (and its gradient accumulates
  from both completions). Prompts are most of the tokens, so a step does about half the work.

`install(model, pairs=...)` wraps the already-fused forward of the model trl patched: calls without
`fused_lm_head=True` (generation, anything else) and batches it cannot read as pairs go to trl's own
forward unchanged. The outputs are trl's `FusedCausalLMOutput`, computed by trl's own kernel, so the
losses and metrics downstream are the ones trl computes; `tests/test_shared_prompt.py` checks
log-probabilities and gradients against trl's forward.
"""

from __future__ import annotations

import types

OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
_CHUNK = 32768  # vocabulary tile of trl's kernel


def _supported(model) -> bool:
    """Only plain causal LMs: no logit scaling or soft-capping to reproduce, no MoE router loss, a head
    without bias the kernel reads as it is."""
    cfg = model.config.get_text_config()
    plain = all(getattr(cfg, k, None) in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale",
                                                                 "output_multiplier", "lm_head_multiplier",
                                                                 "logits_scaling"))  # fmt: skip
    return plain and not getattr(cfg, "output_router_logits", False) and hasattr(model, "base_model")


def install(model, *, pairs: bool) -> bool:
    """Wrap `model.forward` (already patched by trl) with the compact head, and with prompt sharing
    when `pairs` (a DPO batch). Returns False, changing nothing, for a model it cannot serve exactly."""
    if not _supported(model):
        return False
    fused = model.forward

    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or args or labels is None or kwargs.get("shift_labels") is not None:
            return fused(*args, fused_lm_head=fused_lm_head, labels=labels, num_items_in_batch=num_items_in_batch,
                         **kwargs)  # fmt: skip
        kwargs = {k: v for k, v in kwargs.items() if v is not None}  # peft passes its unused arguments as None
        ids = kwargs.pop("input_ids", None)
        mask = kwargs.pop("attention_mask", None)
        if set(kwargs) - {"use_cache", "position_ids", "return_dict"} or ids is None:
            return fused(input_ids=ids, attention_mask=mask, fused_lm_head=True, labels=labels,
                         num_items_in_batch=num_items_in_batch, **kwargs)  # fmt: skip
        layout = pair_layout(ids, mask, labels) if pairs else None
        if layout is not None:
            hidden, rows = _packed_hidden(self, ids, layout)
        else:
            hidden, rows = _plain_hidden(self, ids, mask, kwargs.get("position_ids")), None
        return _score(self, hidden, labels, rows, num_items_in_batch)

    model.forward = types.MethodType(forward, model)
    return True


def pair_layout(ids, mask, labels):
    """Per pair i (rows i and i+B): (prompt length, chosen length, rejected length), or None when the
    batch is not [chosen; rejected] rows that share each prompt, right-padded as trl collates them."""
    import torch

    n, width = ids.shape
    if n % 2 or mask is None or mask.dim() != 2:
        return None
    lengths = mask.sum(-1).tolist()
    scored = labels != -100
    if not torch.equal(mask, (torch.arange(width, device=mask.device) < mask.sum(-1, keepdim=True)).long()):
        return None  # not right-padded
    # the prompt ends where the labels begin; every label after it, up to the row's end
    starts = [int(scored[r].float().argmax()) if scored[r].any() else None for r in range(n)]
    if any(s is None or s == 0 for s in starts):
        return None
    for r in range(n):
        if int(scored[r].sum()) != lengths[r] - starts[r]:
            return None
    b = n // 2
    out = []
    for i in range(b):
        p = starts[i]
        if starts[i + b] != p or not torch.equal(ids[i, :p], ids[i + b, :p]):
            return None
        out.append((p, lengths[i] - p, lengths[i + b] - p))
    return out


def _packed_hidden(model, ids, layout):
    """Hidden states of each row, computed pair by pair as prompt + chosen + rejected in one sequence.
    Returns the packed hidden states (B, T, H) and, per original row, the packed index of each of its
    positions."""
    import torch

    b = len(layout)
    dev = ids.device
    width = max(p + c + r for p, c, r in layout)
    packed = torch.zeros((b, width), dtype=ids.dtype, device=dev)
    positions = torch.zeros((b, width), dtype=torch.long, device=dev)
    allowed = torch.zeros((b, width, width), dtype=torch.bool, device=dev)
    causal = torch.ones((width, width), dtype=torch.bool, device=dev).tril()
    rows: list[torch.Tensor] = [None] * (2 * b)  # type: ignore[list-item]
    for i, (p, c, r) in enumerate(layout):
        packed[i, : p + c] = ids[i, : p + c]
        packed[i, p + c : p + c + r] = ids[i + b, p : p + r]
        positions[i, : p + c] = torch.arange(p + c, device=dev)
        positions[i, p + c : p + c + r] = torch.arange(p, p + r, device=dev)
        allowed[i, : p + c, : p + c] = causal[: p + c, : p + c]  # prompt and chosen: plain causal
        allowed[i, p + c : p + c + r, :p] = True  # rejected sees the prompt ...
        allowed[i, p + c : p + c + r, p + c : p + c + r] = causal[:r, :r]  # ... and itself, not chosen
        pad = torch.arange(p + c + r, width, device=dev)
        allowed[i, pad, pad] = True  # padding sees itself: no empty row (NaN) in attention
        rows[i] = torch.arange(p + c, device=dev)
        rows[i + b] = torch.cat([torch.arange(p, device=dev), torch.arange(p + c, p + c + r, device=dev)])
    attn = allowed.unsqueeze(1)
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        dtype = next(model.parameters()).dtype
        attn = torch.zeros(attn.shape, dtype=dtype, device=dev).masked_fill(~attn, torch.finfo(dtype).min)
    out = model.base_model(input_ids=packed, attention_mask=attn, position_ids=positions, use_cache=False)
    return out.last_hidden_state, rows


def _plain_hidden(model, ids, mask, position_ids):
    out = model.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


def _score(model, hidden, labels, rows, num_items_in_batch):
    """trl's FusedCausalLMOutput from hidden states, projecting only the positions with a label."""
    import torch
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    target = labels[:, 1:]
    scored = target != -100
    flat = hidden.reshape(-1, hidden.size(-1))
    if rows is None:  # hidden is (rows, width, H): the state before each scored label
        index = (torch.arange(labels.size(0), device=labels.device).unsqueeze(1) * hidden.size(1)
                 + torch.arange(target.size(1), device=labels.device)).masked_select(scored)  # fmt: skip
    else:  # packed: row r's position t lives at packed index rows[r][t] of pair r mod B
        b, width = hidden.shape[:2]
        parts = []
        for r in range(labels.size(0)):
            t = scored[r].nonzero().squeeze(-1)
            parts.append((r % b) * width + rows[r][t])
        index = torch.cat(parts)
    head = model.get_output_embeddings()
    states = flat.index_select(0, index).to(head.weight.device)
    per_token = ChunkedLogProbFunction.apply(
        states, head.weight, head.bias, target[scored].to(head.weight.device), 1.0, _CHUNK, None, 1.0, OUTPUTS
    )
    log_probs, entropy, log_sum_sq, mean_logits, is_top1 = (
        None if x is None else x.new_zeros(scored.shape).masked_scatter(scored, x) for x in per_token
    )
    total = scored.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return FusedCausalLMOutput(
        loss=-log_probs.sum() / total,
        log_probs=log_probs,
        entropy=entropy,
        log_sum_sq_probs=log_sum_sq,
        mean_logits=mean_logits,
        is_top1=is_top1,
        label_mask=scored,
    )
