"""Building the model's prompt from the document around the cursor.

The prompt is the text before the cursor (and, for models with fill-in-the-middle tokens, the text
after it) within a budget. The window's start is snapped to a line boundary that moves in steps of
`anchor_lines` lines, so that while the user types, successive prompts share a long common prefix and
the runtime can reuse its key/value cache instead of reading the whole prompt again.

The same `render_prompt` is used for serving and for training, so a learner sees exactly what the
model saw.
"""

from __future__ import annotations

from dataclasses import dataclass

PROSE_LANGUAGES = frozenset(
    {"markdown", "plaintext", "text", "latex", "tex", "restructuredtext", "asciidoc", "git-commit", "org"}
)
#: Lines that open a block: a suggestion after them may span several lines.
BLOCK_OPENERS = (":", "{")


@dataclass(frozen=True)
class PromptConfig:
    max_prefix_chars: int = 3000  # about 750-1000 tokens of code; prefill cost grows with it
    max_suffix_chars: int = 600  # only used by models with fill-in-the-middle tokens
    anchor_lines: int = 16  # the window start moves in steps of this many lines (cache reuse)


@dataclass(frozen=True)
class Context:
    """What the model is asked about, and what post-processing needs to know."""

    prefix: str  # text before the cursor within the window
    suffix: str  # text after the cursor within the window
    language: str
    prose: bool
    multiline: bool  # the cursor line is blank, or follows a block opener: allow a short block
    line_prefix: str  # the cursor's line up to the cursor
    line_suffix: str  # the cursor's line after the cursor
    indent: str  # leading whitespace of the cursor's line (or of the block to come)


def is_prose(language: str) -> bool:
    return language.lower() in PROSE_LANGUAGES


def build_context(text: str, offset: int, language: str, cfg: PromptConfig = PromptConfig()) -> Context:
    """Cut the window around `offset` (a Python string index into `text`)."""
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} outside the document (0..{len(text)})")
    before, after = text[:offset], text[offset:]
    line_start = before.rfind("\n") + 1
    line_end = after.find("\n")
    line_prefix = before[line_start:]
    line_suffix = after if line_end < 0 else after[:line_end]
    prefix = _window_prefix(before, cfg)
    suffix = after[: cfg.max_suffix_chars]
    prose = is_prose(language)
    indent = line_prefix[: len(line_prefix) - len(line_prefix.lstrip())]
    multiline = False
    if not prose and not line_suffix.strip():
        if not line_prefix.strip():
            multiline = True
        else:
            multiline = line_prefix.rstrip().endswith(BLOCK_OPENERS) and not line_prefix.endswith(" ")
    return Context(
        prefix=prefix.replace("\r\n", "\n"),
        suffix=suffix.replace("\r\n", "\n"),
        language=language,
        prose=prose,
        multiline=multiline,
        line_prefix=line_prefix.replace("\r", ""),
        line_suffix=line_suffix.replace("\r", ""),
        indent=indent,
    )


def _window_prefix(before: str, cfg: PromptConfig) -> str:
    if len(before) <= cfg.max_prefix_chars:
        return before
    # Line starts are counted from the top of the document so that an anchor stays put while text
    # is typed below it; the first anchor whose window fits the budget wins.
    line_starts = [0]
    idx = before.find("\n")
    while idx >= 0:
        line_starts.append(idx + 1)
        idx = before.find("\n", idx + 1)
    lowest = len(before) - cfg.max_prefix_chars
    for line_no in range(0, len(line_starts), cfg.anchor_lines):
        if line_starts[line_no] >= lowest:
            return before[line_starts[line_no] :]
    # The cursor's own block of lines is too long (minified code, one huge paragraph): cut by chars.
    return before[lowest:]


@dataclass(frozen=True)
class FimStyle:
    prefix: str
    suffix: str
    middle: str


FIM_STYLES = (
    FimStyle("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder
    FimStyle("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder
)


def render_prompt(ctx: Context, fim: FimStyle | None = None) -> str:
    """The exact string the model reads. Plain continuation of the prefix, or prefix-suffix-middle."""
    if fim is None or not ctx.suffix.strip():
        return ctx.prefix
    return f"{fim.prefix}{ctx.prefix}{fim.suffix}{ctx.suffix}{fim.middle}"
