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

    @property
    def ms_per_token(self) -> float:
        return self.decode_ms / max(self.tokens - 1, 1)


@dataclass
class RuntimeConfig:
    threads: int = 0  # torch intra-op threads; 0 = all cores
    max_context_tokens: int = 2048  # prompts longer than this keep their last tokens
    fast_decoder: bool = True  # the lean Llama-family step (server/fast_decoder.py) where it applies


@dataclass
class _CacheState:
    ids: list[int] = field(default_factory=list)  # tokens whose keys/values are in `cache`
    cache: object | None = None


class Runtime:
    """A causal LM loaded from a local folder, ready to complete prompts."""

    def __init__(self, model_dir: Path, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.info = model_store.validate_model_folder(model_dir)
        self.model_dir = Path(model_dir)
        self.lock = threading.Lock()
        self._state = _CacheState()
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
        self.fast = None
        if self.config.fast_decoder:
            from server import fast_decoder

            reason = fast_decoder.supports(self.model)
            if reason is None:
                self.fast = fast_decoder.FastDecoder(
                    self.model, max_len=self.config.max_context_tokens + 1024
                )
            else:
                log.info("Generic decoding for %s: the lean decoder does not support %s", self.model_dir, reason)
        self.eos_ids = _eos_ids(self.tokenizer, self.model)
        self.fim = _fim_style(self.tokenizer) if self.info.fim else None
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.version = f"base:{self.model_dir.name}"

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
    ) -> Generation:
        with self.lock:
            return self._generate(prompt, max_new_tokens, stop, cancel)

    def _generate(self, prompt, max_new_tokens, stop, cancel) -> Generation:
        torch = self.torch
        started = time.perf_counter()
        ids = self.encode(prompt)
        if len(ids) > self.config.max_context_tokens:
            ids = ids[-self.config.max_context_tokens :]
        if not ids:
            ids = [self.eos_ids[0]]
        state = self._state
        common = _common_prefix(state.ids, ids)
        common = min(common, len(ids) - 1)  # at least one token must be read to get logits
        if self.fast is not None:
            self.fast.crop(common)
        elif state.cache is None or common == 0:
            state.cache = self._new_cache()
            common = 0
        else:
            extra = state.cache.get_seq_length() - common
            if extra > 0:
                state.cache.crop(-extra)
        state.ids = ids[:common]
        out: list[int] = []
        text = ""
        stop_reason = "length"
        first_token_at = prefill_ms = None
        with torch.inference_mode():
            feed = ids[common:]
            for step in range(max_new_tokens):
                if cancel is not None and cancel.cancelled:
                    stop_reason = "cancelled"
                    break
                logits = self._forward(feed)
                state.ids.extend(feed)
                if prefill_ms is None:
                    prefill_ms = (time.perf_counter() - started) * 1000
                token = int(logits.argmax())
                if first_token_at is None:
                    first_token_at = time.perf_counter()
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
                feed = [token]
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
        )

    def _forward(self, feed: list[int]):
        """Read `feed` after the cached tokens; return the next-token logits (1-D)."""
        if self.fast is not None:  # sized for max_context_tokens plus the longest suggestion
            return self.fast.forward(feed)
        inputs = self.torch.tensor([feed], dtype=self.torch.long)
        out = self.model(
            input_ids=inputs, past_key_values=self._state.cache, use_cache=True, logits_to_keep=1
        )
        return out.logits[0, -1]

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def reset_cache(self) -> None:
        with self.lock:
            self._state = _CacheState()
            if self.fast is not None:
                self.fast.crop(0)


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
