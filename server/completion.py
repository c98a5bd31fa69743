"""From a document and a cursor to a suggestion: prompt, generate, post-process.

Knows nothing of LSP. The language server calls `Completer.complete` on its model thread.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from server.postprocess import finalize, stop_at
from server.prompt import Context, PromptConfig, build_context, render_prompt
from server.runtime import CancelToken, Generation, Runtime


@dataclass
class CompletionConfig:
    max_tokens: int = 48  # upper bound on generated tokens per suggestion
    prompt: PromptConfig = field(default_factory=PromptConfig)


@dataclass
class Suggestion:
    id: str
    text: str  # what to insert at the cursor; "" = nothing worth showing
    context: Context
    prompt: str  # the exact text the model read
    latency_ms: float
    generation: Generation | None  # None when served from the previous suggestion
    parent_id: str | None = None  # the suggestion this one continues (typed through)
    model_version: str = ""
    policy: str = "base"


@dataclass
class _Last:
    uri: str
    before: str  # document text before the cursor when it was made
    suggestion: Suggestion


class Completer:
    def __init__(self, runtime: Runtime, config: CompletionConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or CompletionConfig()
        self._last: _Last | None = None

    def complete(
        self,
        uri: str,
        text: str,
        offset: int,
        language: str,
        cancel: CancelToken | None = None,
        policy: str = "base",
    ) -> Suggestion:
        started = time.perf_counter()
        before = text[:offset]
        ctx = build_context(text, offset, language, self.config.prompt)
        typed = self._typed_through(uri, before, ctx)
        if typed is not None:
            return typed
        prompt = render_prompt(ctx, self.runtime.fim)
        gen = self.runtime.generate(
            prompt,
            max_new_tokens=self.config.max_tokens,
            stop=lambda so_far: stop_at(ctx, so_far),
            cancel=cancel,
            policy=policy,
        )
        suggestion = Suggestion(
            id=uuid.uuid4().hex,
            text=finalize(ctx, gen.text) if gen.stop_reason != "cancelled" else "",
            context=ctx,
            prompt=prompt,
            latency_ms=(time.perf_counter() - started) * 1000,
            generation=gen,
            model_version=self.runtime.version,
            policy=policy,
        )
        if suggestion.text and gen.stop_reason != "cancelled":
            self._last = _Last(uri, before, suggestion)
        return suggestion

    def _typed_through(self, uri: str, before: str, ctx: Context) -> Suggestion | None:
        """The user typed the start of the last suggestion: the rest of it is still the answer."""
        last = self._last
        if last is None or last.uri != uri or not before.startswith(last.before):
            return None
        typed = before[len(last.before) :]
        if not typed or not last.suggestion.text.startswith(typed):
            return None
        rest = last.suggestion.text[len(typed) :]
        if not rest.strip():
            return None
        return Suggestion(
            id=uuid.uuid4().hex,
            text=rest,
            context=ctx,
            prompt=render_prompt(ctx, self.runtime.fim),
            latency_ms=0.0,
            generation=None,
            parent_id=last.suggestion.id,
            model_version=last.suggestion.model_version,
            policy=last.suggestion.policy,
        )

    def forget_last(self) -> None:
        self._last = None
