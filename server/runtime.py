"""The model runtime: greedy decoding with a key/value cache kept across requests, and cancellation.

While a user types, each request's prompt extends the last one by a few characters. The runtime keeps
the tokens it has already read and their key/value cache; a new prompt is compared token by token with
them, the cache is cropped to the common part, and only the new tokens are read (prefill shrinks from
hundreds of tokens to a handful). Decoding stops as soon as the caller's `stop` says the suggestion is
complete, or when `cancel` is set by a newer keystroke.

One model, one generation at a time: callers serialise through `lock` (the server runs generation on a
single worker thread).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from server import model_store

log = logging.getLogger(__name__)


class Cancelled(Exception):
    pass


class CancelToken:
    """Set by a newer request; the decode loop checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Generation:
    text: str
    tokens: int  # generated tokens
    prompt_tokens: int
    reused_tokens: int  # prompt tokens whose key/value cache was reused
    prefill_ms: float
    first_token_ms: float  # from the call to the first generated token
    decode_ms: float  # time spent on the steps after the first token
    total_ms: float
    stop_reason: str  # "stop" | "length" | "eos" | "cancelled"
    drafted: int = 0  # prompt-lookup tokens guessed
    accepted_drafts: int = 0  # ... and kept (each one a decoding step saved)

    @property
    def ms_per_token(self) -> float:
        return self.decode_ms / max(self.tokens - 1, 1)


@dataclass
class RuntimeConfig:
    threads: int = 0  # torch intra-op threads; 0 = all cores
    max_context_tokens: int = 2048  # prompts longer than this keep their last tokens
    fast_decoder: bool = True  # the lean Llama-family step (server/fast_decoder.py) where it applies
    draft_tokens: int = 4  # prompt-lookup drafts checked per step (0 = off); output is unchanged


BASE = "base"
MIXTURE = "mixture"


@dataclass
class _Slot:
    """A sequence being decoded: its tokens, and how to extend or shorten its key/value cache."""

    decoder: object | None  # the FastDecoder behind it, if any
    forward: Callable[[list[int]], object]  # read tokens after the cached ones -> next-token scores
    crop: Callable[[int], None]  # keep the first n cached tokens
    ids: list[int] = field(default_factory=list)  # tokens whose keys/values are in the cache
    forward_all: Callable[[list[int]], object] | None = None  # logits after each token read


class Runtime:
    """A causal LM loaded from a local folder, ready to complete prompts."""

    def __init__(self, model_dir: Path, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.info = model_store.validate_model_folder(model_dir)
        self.model_dir = Path(model_dir)
        self.lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        model_store.offline()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.model_dir, local_files_only=True, dtype=torch.float32
            ).eval()
        except Exception as exc:  # transformers raises many types for a broken folder
            raise model_store.ModelFolderError(
                f"Could not load the model in {self.model_dir}: {exc}. Check that the folder is a "
                "complete Hugging Face causal language model, or clear `redline.modelPath` to use "
                "the embedded default."
            ) from exc
        self.weights = None  # fused base weights for the lean decoder, when it applies
        if self.config.fast_decoder:
            from server import fast_decoder

            reason = fast_decoder.supports(self.model)
            if reason is None:
                self.weights = fast_decoder.Weights(self.model)
            else:
                log.info("Generic decoding for %s: the lean decoder does not support %s", self.model_dir, reason)
        self.adapters: dict[str, object] = {BASE: None}  # policy -> adapter (FusedLora or peft name)
        self.mixture_weights: dict[str, float] = {}
        self.version_id: str | None = None
        self._slots: dict[str, _Slot] = {}
        self._single_policy = BASE
        self.eos_ids = _eos_ids(self.tokenizer, self.model)
        self.fim = _fim_style(self.tokenizer) if self.info.fim else None
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.version = f"base:{self.model_dir.name}"

    @property
    def fast(self):
        """The single-policy lean decoder, when the model has one (for figures such as bytes read)."""
        slot = self._single_slot() if self.weights is not None else None
        return slot.decoder if slot is not None else None

    # --- policies ----------------------------------------------------------------------------------

    def policies(self) -> list[str]:
        """The policies this runtime can answer with: base, each loaded adapter, and the Mixture."""
        return list(self.adapters) + ([MIXTURE] if self.mixture_weights else [])

    def use_version(self, version) -> list[str]:
        """Serve the adapters of `version` (server.versions.Version, or None for the base model only).

        Loads everything first and swaps at the end under the lock, so a request in flight finishes
        on the old policies and the next one starts on the new. Returns the policies now served."""
        adapters: dict[str, object] = {BASE: None}
        mixture: dict[str, float] = {}
        if version is not None:
            served = [p for p in version.served if p not in (BASE, MIXTURE)]
            for policy in served:
                folder = version.adapters.get(policy)
                if folder is None or not folder.is_dir():
                    log.warning("Version %s marks %s served but has no adapter for it", version.id, policy)
                    continue
                adapters[policy] = self._load_adapter(policy, folder)
            if MIXTURE in version.served and self.weights is not None:
                weights = {p: w for p, w in version.mixture_weights.items() if p in adapters and w > 0}
                total = sum(weights.values())
                if len(weights) > 1 and total > 0:
                    mixture = {p: w / total for p, w in weights.items()}
        with self.lock:
            self.adapters, self.mixture_weights = adapters, mixture
            self.version_id = version.id if version is not None else None
            self.version = version.id if version is not None else f"base:{self.model_dir.name}"
            self._slots.clear()
            self._single_policy = BASE
        return self.policies()

    def _load_adapter(self, policy: str, folder: Path):
        if self.weights is not None:
            from server.lora import load_adapter

            return load_adapter(folder, self.weights.shapes)
        # Generic path: peft holds the adapters and switches between them.
        from peft import PeftModel

        if not hasattr(self.model, "peft_config"):
            self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=policy).eval()
        else:
            self.model.load_adapter(folder, adapter_name=policy)
        return policy

    # --- decoding slots: one sequence's cache and how to extend it --------------------------------

    def _single_slot(self) -> "_Slot":
        slot = self._slots.get("single")
        if slot is None:
            from server.fast_decoder import FastDecoder

            decoder = FastDecoder(self.weights, max_len=self._max_len())
            slot = _Slot(
                decoder=decoder, forward=decoder.forward, crop=decoder.crop,
                forward_all=lambda ids: decoder.forward(ids, all_positions=True),
            )
            self._slots["single"] = slot
        return slot

    def _max_len(self) -> int:
        return self.config.max_context_tokens + 512 + 8  # the prompt plus the longest suggestion

    def _slot_for(self, policy: str) -> "_Slot":
        if policy == MIXTURE:
            return self._mixture_slot()
        if self.weights is None:
            return self._generic_slot(policy)
        slot = self._single_slot()
        if policy != self._single_policy:

            # Another policy's weights: its keys and values differ too, so the cache starts over.
            decoder = slot.decoder
            decoder.layers = decoder.w.merged(self.adapters[policy])
            decoder.crop(0)
            slot.ids = []
            self._single_policy = policy
        return slot

    def _mixture_slot(self) -> "_Slot":
        slot = self._slots.get(MIXTURE)
        if slot is None:
            from server.fast_decoder import FastDecoder

            names = list(self.mixture_weights)
            decoder = FastDecoder(self.weights, max_len=self._max_len(), row_loras=[self.adapters[p] for p in names])
            alphas = self.torch.tensor([self.mixture_weights[p] for p in names]).unsqueeze(1)

            def forward(feed: list[int]):
                # A token-level mixture: Σ_k α_k π_k(token), then the most likely token.
                probs = self.torch.softmax(decoder.forward(feed), dim=-1)
                return (alphas * probs).sum(dim=0)

            slot = _Slot(decoder=decoder, forward=forward, crop=decoder.crop)
            self._slots[MIXTURE] = slot
        return slot

    def _generic_slot(self, policy: str) -> "_Slot":
        key = f"generic:{policy}"
        slot = self._slots.get(key)
        if slot is None:
            self._slots = {k: v for k, v in self._slots.items() if not k.startswith("generic:")}
            state = {"cache": None}

            def crop(n: int) -> None:
                if n == 0 or state["cache"] is None:
                    state["cache"] = self._new_cache()
                    return
                extra = state["cache"].get_seq_length() - n
                if extra > 0:
                    state["cache"].crop(-extra)

            def forward(feed: list[int]):
                import contextlib

                inputs = self.torch.tensor([feed], dtype=self.torch.long)
                ctx = contextlib.nullcontext()
                if hasattr(self.model, "peft_config"):
                    if policy == BASE:
                        ctx = self.model.disable_adapter()
                    else:
                        self.model.set_adapter(policy)
                with ctx:
                    out = self.model(input_ids=inputs, cache=state["cache"], use_cache=True, logits_to_keep=1)
                return out.logits[0, -1]

            slot = _Slot(decoder=None, forward=forward, crop=crop)
            self._slots[key] = slot
        return slot

    # --- tokens ------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # --- generation --------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Callable[[str], int | None] | None = None,
        cancel: CancelToken | None = None,
        policy: str = "base",
    ) -> Generation:
        with self.lock:
            if policy not in self.adapters and not (policy == MIXTURE and self.mixture_weights):
                policy = BASE  # a policy from a version no longer served
            return self._generate(prompt, max_new_tokens, stop, cancel, self._slot_for(policy))

    def _generate(self, prompt, max_new_tokens, stop, cancel, slot: "_Slot") -> Generation:
        torch = self.torch
        started = time.perf_counter()
        ids = self.encode(prompt)
        if len(ids) > self.config.max_context_tokens:
            ids = ids[-self.config.max_context_tokens :]
        if not ids:
            ids = [next(iter(self.eos_ids))]
        state = slot
        common = _common_prefix(state.ids, ids)
        common = min(common, len(ids) - 1)  # at least one token must be read to get logits
        slot.crop(common)
        state.ids = ids[:common]
        out: list[int] = []
        text = ""
        stop_reason = "length"
        first_token_at = prefill_ms = None
        drafted = accepted_drafts = 0
        with torch.inference_mode():
            feed = ids[common:]
            while len(out) < max_new_tokens and stop_reason == "length":
                if cancel is not None and cancel.cancelled:
                    stop_reason = "cancelled"
                    break
                draft = []
                if slot.forward_all is not None and self.config.draft_tokens:
                    draft = _draft(ids + out, self.config.draft_tokens)
                if draft:
                    # Prompt-lookup decoding: guess the next tokens from an earlier occurrence of
                    # the last few, and check them all in one pass (a pass reads the weights once
                    # whatever its length). Greedy output is unchanged: only guesses the model
                    # itself would have chosen are kept.
                    logits = slot.forward_all(feed + draft)
                    preds = logits[len(feed) - 1 :].argmax(-1).tolist()
                    ok = 0
                    while ok < len(draft) and draft[ok] == preds[ok]:
                        ok += 1
                    state.ids.extend(feed + draft[:ok])
                    slot.crop(len(state.ids))  # forget the keys/values of rejected guesses
                    produced = draft[:ok] + [preds[ok]]
                    drafted += len(draft)
                    accepted_drafts += ok
                else:
                    logits = slot.forward(feed)
                    state.ids.extend(feed)
                    produced = [int(logits.argmax())]
                if prefill_ms is None:
                    prefill_ms = (time.perf_counter() - started) * 1000
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                for token in produced:
                    if token in self.eos_ids:
                        stop_reason = "eos"
                        break
                    out.append(token)
                    text = self.decode(out)
                    if stop is not None:
                        cut = stop(text)
                        if cut is not None:
                            text = text[:cut]
                            stop_reason = "stop"
                            break
                    if len(out) >= max_new_tokens:
                        break
                feed = [produced[-1]]
        if stop_reason == "cancelled":
            text = ""
        now = time.perf_counter()
        first_token_ms = ((first_token_at or now) - started) * 1000
        return Generation(
            text=text,
            tokens=len(out),
            prompt_tokens=len(ids),
            reused_tokens=common,
            prefill_ms=prefill_ms or 0.0,
            first_token_ms=first_token_ms,
            decode_ms=(now - (first_token_at or now)) * 1000,
            total_ms=(now - started) * 1000,
            stop_reason=stop_reason,
            drafted=drafted,
            accepted_drafts=accepted_drafts,
        )

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def reset_cache(self) -> None:
        with self.lock:
            for slot in self._slots.values():
                slot.crop(0)
                slot.ids = []


def _draft(seq: list[int], k: int, window: int = 2048) -> list[int]:
    """Up to `k` tokens that followed the most recent earlier occurrence of the last 3 (or 2) tokens."""
    n_seq = len(seq)
    lo = max(0, n_seq - window)
    for n in (3, 2):
        if n_seq <= n:
            continue
        tail = seq[-n:]
        first = tail[0]
        for i in range(n_seq - n - 1, lo - 1, -1):
            if seq[i] == first and seq[i : i + n] == tail:
                return seq[i + n : i + n + k]
    return []


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _eos_ids(tokenizer, model) -> set[int]:
    ids: set[int] = set()
    vocab = tokenizer.get_vocab()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(x) for x in source)
    for name in ("<|endoftext|>", "<|im_end|>", "<|file_separator|>", "<file_sep>"):
        if name in vocab:
            ids.add(vocab[name])
    return ids or {0}


def _fim_style(tokenizer):
    from server.prompt import FIM_STYLES

    vocab = tokenizer.get_vocab()
    for style in FIM_STYLES:
        if style.prefix in vocab and style.suffix in vocab and style.middle in vocab:
            return style
    return None
