"""Token ids for training and evaluation, cut the way serving cuts them.

Serving (`server.runtime.Runtime`) reads `tokenizer(prompt, add_special_tokens=True)` and keeps the last
`max_context_tokens` of it, then appends the tokens it generates one by one. So a completion is
tokenized on its own (no special tokens) and appended to the prompt's ids, never tokenized together
with the prompt (tokens would merge across the boundary and the model would learn a context it never
sees). Prompts are cut from the left, as serving does, so that the completion is never truncated away.
The completion ends with the end-of-text token: the model learns where the user's text stopped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lengths:
    max_prompt_tokens: int = 384  # serving keeps up to 2,048; training cost grows with it
    max_completion_tokens: int = 128  # a suggestion is a line or a short block


def eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("The tokenizer has no end-of-text token; the trainer needs one to end completions.")


def prompt_ids(tokenizer, prompt: str, max_tokens: int) -> list[int]:
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if max_tokens and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    if not ids:  # an empty prompt: serving reads one end-of-text token instead
        ids = [eos_id(tokenizer)]
    return list(ids)


def completion_ids(tokenizer, text: str, max_tokens: int, eos: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:max_tokens]
    return ids + [eos_id(tokenizer)] if eos else ids


def sft_example(tokenizer, prompt: str, completion: str, lengths: Lengths) -> dict[str, list[int]]:
    """trl SFT's pre-tokenized form: `input_ids` and `completion_mask` (1 where the loss applies)."""
    p = prompt_ids(tokenizer, prompt, lengths.max_prompt_tokens)
    c = completion_ids(tokenizer, completion, lengths.max_completion_tokens)
    return {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}


def pref_example(tokenizer, prompt: str, chosen: str, rejected: str, lengths: Lengths) -> dict[str, list[int]]:
    """trl DPO's tokenized form: `prompt_ids`, `chosen_ids`, `rejected_ids`."""
    return {
        "prompt_ids": prompt_ids(tokenizer, prompt, lengths.max_prompt_tokens),
        "chosen_ids": completion_ids(tokenizer, chosen, lengths.max_completion_tokens),
        "rejected_ids": completion_ids(tokenizer, rejected, lengths.max_completion_tokens),
    }
