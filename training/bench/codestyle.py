"""Code preferences of simulated users, for completing a Python function.

The response is the code the model wrote after the context's prompt (the signature and docstring of
a HumanEval function), usually the function's body. A preference looks at the program
`prompt + response` (so that names, signatures and scopes make sense) and edits the response only:
the prompt is the task's, not the user's to change.

Each preference checks content before form, like the writing ones (`training.bench.writing`): the
program parses, the completed function does something (a statement that is not `pass`, `...` or
`raise NotImplementedError`) and uses its arguments, and the response does not loop (a line repeated
three times or more, beyond what the reference solution does). When content fails, the user replaces
the response with the reference solution (HumanEval's `canonical_solution`), then formats that: a
person who knows the answer writes it. `PassesTests` adds the strongest content check: the tests pass
in the sandbox.

Preferences of form:

- `Pep8Names`: variables, arguments and functions the response binds are snake_case (a CamelCase or
  mixedCase name is renamed everywhere it is used, f-strings included; module-level ALL_CAPS constants
  and class names are left alone; names the prompt binds are not the response's to rename);
- `TypeHints`: every function the response defines has annotated parameters and return. Annotations
  are copied from the prompt's function of the same name (or parameter of the same name); otherwise
  inferred from a default value or from what the function returns, else `object`;
- `Docstring`: every function the response defines has a docstring (the prompt's, for a function of
  the same name; otherwise a line made from the function's name);
- `FStrings`: `"..." % x` and `"...".format(...)` become f-strings where the conversion is exact
  (`training.bench.fstrings` says where that is); others are left as they are;
- `EarlyReturns`: no `else`/`elif` after an `if` branch that ends in `return` or `raise`: the else
  block is dedented, `elif` becomes `if` (ruff's RET505/RET506). Flattening nested `if`s into guard
  clauses in general is not attempted: it needs an understanding of the conditions that a
  deterministic edit cannot have;
- `Formatter`: a real formatter acting as the user: `ruff format` or `black`, run in a subprocess with
  a timeout. A body is formatted inside a throw-away function so that its indentation stays.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import keyword
import re
import subprocess
import sys
import sysconfig
import tempfile
import tokenize
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.bench.contexts import as_context
from training.bench.fstrings import format_to_fstring, percent_to_fstring

Edit = tuple[int, int, str]  # (start offset, end offset, replacement) in the program text


def prefix_of(ctx: Mapping[str, Any]) -> str:
    """The code that precedes the response: the prompt of a completion task, else nothing."""
    if ctx.get("domain") == "code" and ctx.get("task", "complete") == "complete":
        return str(ctx.get("prompt", ""))
    return ""


def reference_code(ctx: Mapping[str, Any]) -> str:
    """What the user writes in place of a useless response: the reference solution, if known."""
    return str(ctx.get("canonical_solution") or "")


# --- program text ----------------------------------------------------------------------------------


class Source:
    """A program's text, its tree and tokens, and conversions from (line, column) to offsets."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.start = start  # where the response begins; edits before it are not allowed
        self.tree = ast.parse(text)
        self.lines = text.splitlines(keepends=True)
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))

    def offset(self, lineno: int, col_bytes: int) -> int:
        """Offset of an ast position (1-based line, UTF-8 byte column)."""
        if lineno - 1 >= len(self.lines):
            return len(self.text)
        line = self.lines[lineno - 1]
        col = col_bytes if line.isascii() else len(line.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))
        return self.line_starts[lineno - 1] + col

    def node_start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def node_end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.node_start(node) : self.node_end(node)]

    @functools.cached_property
    def tokens(self) -> list[tuple[tokenize.TokenInfo, int, int]]:
        """(token, start offset, end offset) for every token."""
        out = []
        for tok in tokenize.generate_tokens(io.StringIO(self.text).readline):
            s = self.line_starts[tok.start[0] - 1] + tok.start[1] if tok.start[0] <= len(self.lines) else len(self.text)
            e = self.line_starts[tok.end[0] - 1] + tok.end[1] if tok.end[0] <= len(self.lines) else len(self.text)
            out.append((tok, s, e))
        return out

    def in_response(self, node: ast.AST) -> bool:
        return self.node_start(node) >= self.start

    def functions(self) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
        """Functions whose `def` lies in the response, outermost first."""
        found = []
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = self.node_start(node.decorator_list[0]) if node.decorator_list else self.node_start(node)
                if start >= self.start:
                    found.append(node)
        return found

    def prefix_functions(self) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
        """Functions the prompt defines, by name (the last definition wins)."""
        out = {}
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and self.node_start(node) < self.start:
                out[node.name] = node
        return out


def apply_edits(text: str, edits: list[Edit]) -> str:
    for s, e, new in sorted(edits, key=lambda x: (x[0], x[1]), reverse=True):
        text = text[:s] + new + text[e:]
    return text


def _parse(prefix: str, response: str) -> Source | None:
    try:
        return Source(prefix + response, len(prefix))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None


# --- content ---------------------------------------------------------------------------------------


def _trivial(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # a docstring, a stray string, `...`
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    a = fn.args
    out = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    if a.vararg:
        out.append(a.vararg)
    if a.kwarg:
        out.append(a.kwarg)
    return out


def _repeated_lines(text: str) -> Counter:
    lines = [line.strip() for line in text.splitlines()]
    return Counter(line for line in lines if len(line) >= 12 and not line.startswith("#"))


@dataclass(frozen=True)
class CodeContent:
    """What a user checks before style: the code parses, does something with its inputs, no loops."""

    repeat_times: int = 3  # a line (12+ characters) this many times, beyond the reference's own count

    def problem(self, ctx: Mapping[str, Any], response: str) -> str | None:
        """None when acceptable, else "syntax", "empty", "ignores-inputs" or "repeats"."""
        src = _parse(prefix_of(ctx), response)
        if src is None:
            return "syntax"
        reference = reference_code(ctx)
        entry = ctx.get("entry_point")
        if entry and reference:
            fns = [
                n for n in src.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry
            ]
            if not fns:
                return "empty"
            fn = fns[-1]
            if all(_trivial(s) for s in fn.body):
                return "empty"
            names = {p.arg for p in _params(fn)}
            used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            if names and not names & used:
                return "ignores-inputs"
        mine = _repeated_lines(response)
        ref = _repeated_lines(reference)
        if any(c >= self.repeat_times and c > ref.get(line, 0) for line, c in mine.items()):
            return "repeats"
        return None

    def ok(self, ctx: Mapping[str, Any], response: str) -> bool:
        return self.problem(ctx, response) is None


class CodePreference:
    """Content check plus one rule of style, on the response after the context's prompt."""

    name = "code"

    def __init__(self, content: CodeContent | None = None) -> None:
        self.content = content or CodeContent()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def format_ok(self, ctx: Mapping[str, Any], response: str) -> bool:
        raise NotImplementedError

    def format(self, ctx: Mapping[str, Any], response: str) -> str:
        raise NotImplementedError

    def satisfied(self, context: str | Mapping[str, Any], text: str) -> bool:
        ctx = as_context(context)
        return self.content.ok(ctx, text) and self.format_ok(ctx, text)

    def apply(self, context: str | Mapping[str, Any], text: str) -> str:
        ctx = as_context(context)
        if self.satisfied(ctx, text):
            return text
        if self.content.ok(ctx, text):
            out = self.format(ctx, text)
            if self.content.ok(ctx, out) and self.format_ok(ctx, out):
                return out
        return self.format(ctx, reference_code(ctx))


class _EditingPreference(CodePreference):
    """A preference whose rule is "no edit left to make": `edits` lists what is still to do."""

    def edits(self, src: Source, ctx: Mapping[str, Any]) -> list[Edit]:
        raise NotImplementedError

    def format_ok(self, ctx, response):
        prefix = prefix_of(ctx)
        src = _parse(prefix, response)
        return src is None or not self.edits(src, ctx)

    def format(self, ctx, response):
        prefix = prefix_of(ctx)
        for _ in range(50):  # one edit can reveal another (nested else blocks, nested formats)
            src = _parse(prefix, response)
            if src is None:
                break
            edits = self.edits(src, ctx)
            if not edits:
                break
            new = apply_edits(src.text, edits)
            if _parse(prefix, new[len(prefix) :]) is None:
                break  # never leave the program broken
            response = new[len(prefix) :]
        return response


# --- PEP 8 names -----------------------------------------------------------------------------------

_RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


def snake_case(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def _bad_name(name: str, module_level: bool) -> bool:
    if name.startswith("__") and name.endswith("__") or not any(c.isupper() for c in name):
        return False
    return not (module_level and name.isupper())


def _fstring_rename(tok: str, mapping: dict[str, str]) -> str:
    """Rename identifiers inside the {...} fields of an f-string token, not in its literal text."""
    out = []
    depth = 0
    i = 0
    field_start = 0
    while i < len(tok):
        ch = tok[i]
        if depth == 0 and ch in "{}" and tok[i : i + 2] in ("{{", "}}"):
            out.append(tok[i : i + 2])
            i += 2
            continue
        if ch == "{":
            if depth == 0:
                field_start = i + 1
                out.append("{")
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                field = tok[field_start:i]
                for old, new in mapping.items():
                    field = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, field)
                out.append(field + "}")
        elif depth == 0:
            out.append(ch)
        i += 1
    if depth:
        return tok
    return "".join(out)


class Pep8Names(_EditingPreference):
    """snake_case names for what the response binds (variables, arguments, functions)."""

    name = "pep8-names"

    def edits(self, src, ctx):
        prefix_bound: set[str] = set()
        used: set[str] = set()
        bad: set[str] = set()

        def visit(node: ast.AST, module_level: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = module_level and not isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
                )
                names: list[tuple[str, bool]] = []  # (name, counts as module level)
                if isinstance(child, ast.Name):
                    used.add(child.id)
                    if isinstance(child.ctx, ast.Store):
                        names.append((child.id, module_level))
                elif isinstance(child, ast.arg):
                    names.append((child.arg, False))
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.append((child.name, False))
                elif isinstance(child, ast.ExceptHandler) and child.name:
                    names.append((child.name, False))
                elif isinstance(child, ast.ClassDef):
                    prefix_bound.add(child.name)  # CapWords is right for classes
                elif isinstance(child, (ast.Import, ast.ImportFrom)):
                    prefix_bound.update((a.asname or a.name).split(".")[0] for a in child.names)
                elif isinstance(child, (ast.Global, ast.Nonlocal)):
                    prefix_bound.update(child.names)
                for name, mod in names:
                    used.add(name)
                    if hasattr(child, "lineno") and src.node_start(child) < src.start:
                        prefix_bound.add(name)
                    elif _bad_name(name, mod):
                        bad.add(name)
                visit(child, inner)

        visit(src.tree, True)
        mapping: dict[str, str] = {}
        taken = used | _RESERVED
        for name in sorted(bad - prefix_bound):
            new = snake_case(name)
            while new in taken or new in mapping.values():
                new += "_"
            mapping[name] = new
        if not mapping:
            return []
        edits: list[Edit] = []
        prev = None
        for tok, s, e in src.tokens:
            if s >= src.start:
                if tok.type == tokenize.NAME and tok.string in mapping and not (prev and prev.string == "."):
                    edits.append((s, e, mapping[tok.string]))
                elif tok.type == tokenize.STRING and re.match(r"^[rRbBuU]?[fF]", tok.string):
                    renamed = _fstring_rename(tok.string, mapping)
                    if renamed != tok.string:
                        edits.append((s, e, renamed))
            if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                prev = tok
        return edits


# --- type hints ------------------------------------------------------------------------------------


def _boolish(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.Compare) or isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return True
    if isinstance(node, ast.BoolOp):
        return all(_boolish(v) for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in ("isinstance", "issubclass", "any", "all", "callable", "bool", "hasattr")
    return False


_LITERAL_TYPES = (
    (ast.List, "list"),
    (ast.ListComp, "list"),
    (ast.Dict, "dict"),
    (ast.DictComp, "dict"),
    (ast.Set, "set"),
    (ast.SetComp, "set"),
    (ast.Tuple, "tuple"),
    (ast.JoinedStr, "str"),
)


def _literal_type(node: ast.AST | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        v = node.value
        if v is None:
            return "None"
        return type(v).__name__ if isinstance(v, (bool, int, float, str, bytes)) else None
    if _boolish(node):
        return "bool"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id
        in (
            "int",
            "float",
            "str",
            "list",
            "dict",
            "set",
            "tuple",
            "len",
            "sorted",
            "abs",
            "sum",
        )
    ):
        return {"len": "int", "sorted": "list", "abs": None, "sum": None}.get(node.func.id, node.func.id)
    for kind, name in _LITERAL_TYPES:
        if isinstance(node, kind):
            return name
    return None


def _own_nodes(fn: ast.AST):
    """Nodes of a function's body, not descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _return_type(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    values = []
    for node in _own_nodes(fn):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return "object"
        if isinstance(node, ast.Return) and node.value is not None:
            values.append(node.value)
    if not values:
        return "None"
    kinds = {_literal_type(v) for v in values}
    if len(kinds) == 1 and None not in kinds and "None" not in kinds:
        return kinds.pop()  # type: ignore[return-value]
    if kinds == {"int", "float"}:
        return "float"
    return "object"


def _is_method(fn: ast.AST, tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and fn in node.body:
            return not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)  # type: ignore[attr-defined]
    return False


class TypeHints(_EditingPreference):
    """Annotated parameters and return on every function the response defines."""

    name = "type-hints"

    def edits(self, src, ctx):
        known = src.prefix_functions()
        by_param: dict[str, str] = {}
        for fn in known.values():
            for p in _params(fn):
                if p.annotation is not None:
                    by_param.setdefault(p.arg, src.segment(p.annotation))
        edits: list[Edit] = []
        for fn in src.functions():
            ref = known.get(fn.name)
            ref_params = {p.arg: p for p in _params(ref)} if ref else {}
            params = _params(fn)
            if params and _is_method(fn, src.tree):
                params = params[1:]
            a = fn.args
            positional = [*a.posonlyargs, *a.args]
            defaults = dict(
                zip([p.arg for p in positional[len(positional) - len(a.defaults) :]], a.defaults, strict=True)
            )
            defaults.update({p.arg: d for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None})
            for p in params:
                if p.annotation is not None:
                    continue
                rp = ref_params.get(p.arg)
                if rp is not None and rp.annotation is not None:
                    ann = src.segment(rp.annotation)
                else:
                    lit = _literal_type(defaults.get(p.arg))
                    ann = by_param.get(p.arg) or ({"None": "object | None"}.get(lit, lit) if lit else "object")
                end = src.node_end(p)
                edits.append((end, end, f": {ann}"))
                default = defaults.get(p.arg)
                if default is not None:
                    gap_end = src.node_start(default)
                    if src.text[end:gap_end].strip() == "=":
                        edits.append((end, gap_end, " = "))
            if fn.returns is None:
                ret = src.segment(ref.returns) if ref is not None and ref.returns is not None else _return_type(fn)
                close = self._params_close(src, fn)
                if close is None:
                    continue
                edits.append((close, close, f" -> {ret}"))
        return edits

    @staticmethod
    def _params_close(src: Source, fn: ast.AST) -> int | None:
        """Offset just after the `)` that closes the parameter list."""
        start = src.node_start(fn)
        depth = 0
        for tok, s, e in src.tokens:
            if s < start or tok.type != tokenize.OP:
                continue
            if tok.string in "([{":
                depth += 1
            elif tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    return e
        return None


# --- docstrings ------------------------------------------------------------------------------------


def _has_docstring(fn: ast.AST) -> bool:
    body = fn.body  # type: ignore[attr-defined]
    return (
        bool(body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def _name_sentence(name: str) -> str:
    words = snake_case(name).strip("_").replace("_", " ").split()
    text = " ".join(words) or name
    return text[:1].upper() + text[1:] + "."


class Docstring(_EditingPreference):
    """A docstring on every function the response defines."""

    name = "docstring"

    def edits(self, src, ctx):
        known = src.prefix_functions()
        edits: list[Edit] = []
        for fn in src.functions():
            if _has_docstring(fn):
                continue
            ref = known.get(fn.name)
            if ref is not None and _has_docstring(ref):
                doc = src.segment(ref.body[0])
            else:
                doc = f'"""{_name_sentence(fn.name)}"""'
            first = fn.body[0]
            at = src.node_start(first)
            line_start = src.text.rfind("\n", 0, at) + 1
            if src.text[line_start:at].strip():
                # `def f(x): return x`: the body moves to its own lines, under the docstring.
                def_line = src.lines[fn.lineno - 1]
                indent = def_line[: len(def_line) - len(def_line.lstrip())] + "    "
                colon = len(src.text[:at].rstrip())
                edits.append((colon, at, f"\n{indent}{doc}\n{indent}"))
            else:
                indent = src.text[line_start:at]
                edits.append((at, at, f"{doc}\n{indent}"))
        return edits


# --- f-strings -------------------------------------------------------------------------------------


class FStrings(_EditingPreference):
    """f-strings instead of `%` formatting and `str.format` where the conversion is exact."""

    name = "f-strings"

    def edits(self, src, ctx):
        candidates: list[Edit] = []
        for node in ast.walk(src.tree):
            if not isinstance(node, (ast.BinOp, ast.Call)) or not src.in_response(node):
                continue
            new = None
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
            ):
                new = percent_to_fstring(src.segment, node)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and isinstance(node.func.value.value, str)
            ):
                new = format_to_fstring(src.segment, node)
            if new is not None:
                candidates.append((src.node_start(node), src.node_end(node), new))
        chosen: list[Edit] = []
        for c in sorted(candidates, key=lambda c: (c[0], -c[1])):
            if all(c[0] >= d[1] or c[1] <= d[0] for d in chosen):
                chosen.append(c)
        return chosen


# --- early returns ---------------------------------------------------------------------------------


def _terminates(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Return, ast.Raise)):
        return True
    if isinstance(stmt, ast.If) and stmt.orelse:
        return _terminates(stmt.body[-1]) and _terminates(stmt.orelse[-1])
    return False


class EarlyReturns(_EditingPreference):
    """No `else`/`elif` after an `if` branch that returns or raises (RET505/RET506)."""

    name = "early-returns"

    def edits(self, src, ctx):
        for fn in src.functions() + [f for f in src.prefix_functions().values()]:
            for node in _own_nodes(fn):
                if isinstance(node, ast.If) and src.in_response(node):
                    edit = self._edit(src, node, fn)
                    if edit is not None:
                        return [edit]  # one at a time: positions move
        return []

    @staticmethod
    def _is_elif(src: Source, node: ast.If, fn: ast.AST) -> bool:
        return src.text.startswith("elif", src.node_start(node))

    def _edit(self, src: Source, node: ast.If, fn: ast.AST) -> Edit | None:
        if not node.orelse or not _terminates(node.body[-1]) or self._is_elif(src, node, fn):
            return None
        first = node.orelse[0]
        if len(node.orelse) == 1 and isinstance(first, ast.If) and self._is_elif(src, first, fn):
            at = src.node_start(first)
            return (at, at + 4, "if")
        body_end = src.node_end(node.body[-1])
        first_start = src.node_start(first)
        else_tok = None
        for tok, s, e in src.tokens:
            if body_end <= s < first_start and tok.type == tokenize.NAME and tok.string == "else":
                else_tok = (s, e)
        if else_tok is None:
            return None
        if_col = node.col_offset
        else_line = src.text.rfind("\n", 0, else_tok[0]) + 1
        else_line_end = src.text.find("\n", else_tok[0])
        if else_line_end < 0 or first_start < else_line_end:
            # `else: return x` on one line: the statement moves to the `else`'s place.
            return (else_tok[0], first_start, "")
        if not re.fullmatch(r"[ ]*else\s*:\s*(#.*)?", src.text[else_line:else_line_end]):
            return None
        block_start = else_line_end + 1
        block_end = (
            src.line_starts[node.orelse[-1].end_lineno]
            if node.orelse[-1].end_lineno < len(src.lines)
            else len(src.text)
        )
        block = src.text[block_start:block_end]
        first_line = src.lines[first.lineno - 1]
        delta = len(first_line) - len(first_line.lstrip(" ")) - if_col
        if delta <= 0:
            return None
        for tok, s, e in src.tokens:
            if tok.type == tokenize.STRING and tok.start[0] != tok.end[0] and s < block_end and e > block_start:
                return None  # dedenting would change a multi-line string
        out = []
        for line in block.splitlines(keepends=True):
            if line.strip() and not line.startswith(" " * delta):
                return None
            out.append(line[delta:] if line.strip() else line.lstrip(" "))
        return (else_line, block_end, "".join(out))


# --- formatters ------------------------------------------------------------------------------------

_WRAPPER = "def _redline_body_():\n"
FORMATTERS = ("ruff", "black")


@functools.lru_cache(maxsize=2)
def formatter_command(tool: str) -> list[str]:
    """The formatter's command line, reading stdin and writing stdout, ignoring project settings.

    ruff's own binary (installed beside this Python) when present: starting it takes a few
    milliseconds against about 100 for `python -m ruff`.
    """
    if tool == "ruff":
        binary = Path(sysconfig.get_path("scripts")) / "ruff"
        head = [str(binary)] if binary.is_file() else [sys.executable, "-m", "ruff"]
        return [*head, "format", "--isolated", "--quiet", "-"]
    if tool == "black":
        return [sys.executable, "-m", "black", "--quiet", "--fast", "-"]
    raise ValueError(f"formatter must be one of {FORMATTERS}, not {tool!r}")


@functools.lru_cache(maxsize=8192)
def run_formatter(tool: str, code: str, timeout: float = 10.0) -> str | None:
    """The formatted code, or None when the formatter refuses it (a syntax error) or runs too long."""
    try:
        proc = subprocess.run(
            formatter_command(tool),
            input=code,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tempfile.gettempdir(),  # no project configuration applies
        )
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def format_response(tool: str, response: str, timeout: float = 10.0) -> str | None:
    """Format a response; an indented body is formatted inside a throw-away function."""
    first = next((line for line in response.splitlines() if line.strip()), "")
    if first[:1].isspace():
        out = run_formatter(tool, _WRAPPER + response, timeout)
        if out is None or not out.startswith(_WRAPPER):
            return None
        return out[len(_WRAPPER) :]
    return run_formatter(tool, response, timeout)


class Formatter(CodePreference):
    """The code is as `ruff format` (or `black`) leaves it."""

    def __init__(self, tool: str = "ruff", timeout: float = 10.0, content: CodeContent | None = None) -> None:
        super().__init__(content)
        formatter_command(tool)  # an unknown tool fails here, not at the first edit
        self.tool = tool
        self.timeout = timeout
        self.name = f"{tool}-format"

    def format_ok(self, ctx, response):
        out = format_response(self.tool, response, self.timeout)
        return out is None or out == response  # code it cannot format is not its to judge

    def format(self, ctx, response):
        out = format_response(self.tool, response, self.timeout)
        return response if out is None else out


class PassesTests(CodePreference):
    """The completed function passes the problem's tests (run in `training.bench.sandbox`)."""

    name = "passes-tests"

    def __init__(self, timeout: float = 10.0, content: CodeContent | None = None) -> None:
        super().__init__(content)
        self.timeout = timeout

    def format_ok(self, ctx, response):
        from training.bench.sandbox import SandboxConfig, check_completion

        if not ctx.get("test") or not ctx.get("entry_point"):
            return True
        return check_completion(ctx, response, SandboxConfig(timeout_s=self.timeout)).passed

    def format(self, ctx, response):
        return reference_code(ctx) or response


CODE_PREFERENCES = {
    cls.__name__: cls for cls in (Pep8Names, TypeHints, Docstring, FStrings, EarlyReturns, Formatter, PassesTests)
}
