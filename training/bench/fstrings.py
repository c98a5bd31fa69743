"""Exact conversion of `%` formatting and `str.format` calls to f-strings, at the source level.

Used by the `FStrings` preference (`training.bench.codestyle`). A conversion is made only where the
f-string gives the same text for any values: a plain one-line literal (not bytes, not implicitly
concatenated), positional or named fields, simple specs. Otherwise the functions return None and the
call stays as it was:

- `%`: a dict operand or `%(name)s` keys, `*` widths, `%c`, a precision on `%d`, flags on `%s`, or a
  number of values that does not match the string;
- `.format`: `*args`/`**kwargs`, nested `{}` in a spec, `{0[name]}` (a string key, not a variable),
  mixed automatic and manual numbering, an argument the string never shows (its side effects would
  go), or a call used twice (it would run twice);
- either: a field expression with a newline, a backslash or `#`, or quotes that no choice of the
  f-string's own quote can hold (Python 3.11 f-strings cannot nest the same quote).

`%s` becomes `{x}` and `%d` `{x}`: equal for str and int values (for a float, `%d` truncates and
`{x}` does not — the conversion a person makes, and HumanEval's code prints ints).
"""

from __future__ import annotations

import ast
import re
import string
from collections import Counter
from collections.abc import Callable

Segment = Callable[[ast.AST], str]  # the source text of a node

_PERCENT = re.compile(r"%(?:\((\w+)\))?([-#0 +]*)(\d+|\*)?(?:\.(\d+|\*))?([diouxXeEfFgGcrsa%])")
_LITERAL = re.compile(r"([rRuU]?)(['\"])(.*)\2", re.S)


def _literal(seg: str) -> tuple[str, str, str] | None:
    """(prefix, quote, body) of a plain one-line string literal, else None."""
    m = _LITERAL.fullmatch(seg)
    if not m or seg.lstrip("rRuU").startswith(m.group(2) * 3) or "\n" in m.group(3):
        return None
    body = m.group(3)
    if re.search(r"(?<!\\)(?:\\\\)*" + re.escape(m.group(2)), body):
        return None  # implicit concatenation such as 'a' 'b'
    return m.group(1).lower().replace("u", ""), m.group(2), body


def _field_expr(segment: Segment, node: ast.AST) -> str | None:
    seg = segment(node)
    if "\n" in seg or "\\" in seg or "#" in seg:
        return None
    if isinstance(node, (ast.Lambda, ast.NamedExpr, ast.Dict, ast.DictComp, ast.Set, ast.SetComp)) or seg.startswith(
        "{"
    ):
        seg = f"({seg})"
    return seg


def _fstring(prefix: str, quote: str, parts: list[str], exprs: list[str]) -> str | None:
    """Assemble an f-string, choosing a quote that no field expression uses; None if impossible."""
    body = "".join(parts)
    for q in (quote, "'" if quote == '"' else '"'):
        if any(q in e for e in exprs):
            continue
        if q != quote and q in body:
            continue
        text = f"{prefix}f{q}{body}{q}"
        try:
            ast.parse(text, mode="eval")
        except SyntaxError:
            return None
        return text
    return None


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def percent_to_fstring(segment: Segment, node: ast.BinOp) -> str | None:
    """The f-string equal to `"..." % args`, or None where no exact one is found."""
    lit = _literal(segment(node.left))
    if lit is None:
        return None
    prefix, quote, body = lit
    if "b" in prefix:
        return None
    right = node.right
    if isinstance(right, ast.Dict):
        return None
    args = list(right.elts) if isinstance(right, ast.Tuple) else [right]
    if any(isinstance(a, ast.Starred) for a in args):
        return None
    parts: list[str] = []
    exprs: list[str] = []
    pos = 0
    i = 0
    for m in _PERCENT.finditer(body):
        between = body[pos : m.start()]
        if "%" in between:
            return None
        parts.append(_escape_braces(between))
        pos = m.end()
        key, flags, width, precision, conv = m.groups()
        if conv == "%":
            if key or flags or width or precision:
                return None
            parts.append("%")
            continue
        if key or width == "*" or precision == "*" or conv == "c" or i >= len(args):
            return None
        expr = _field_expr(segment, args[i])
        i += 1
        if expr is None:
            return None
        flags = flags or ""
        if conv in "diu" and precision:
            return None
        spec = ""
        if conv in ("s", "r", "a"):
            if precision or set(flags) - {"-"}:
                return None
            field = expr if conv == "s" and not width else f"{expr}!{conv}"
            if width:
                spec = ("<" if "-" in flags else ">") + width
        else:
            field = expr
            align = "<" if "-" in flags else ""
            sign = "+" if "+" in flags else (" " if " " in flags else "")
            alt = "#" if "#" in flags else ""
            zero = "0" if "0" in flags and not align else ""
            typ = "d" if conv in "diu" else conv
            spec = align + sign + alt + zero + (width or "") + (f".{precision}" if precision else "")
            if spec or typ != "d":
                spec += typ
        exprs.append(expr)
        parts.append("{" + field + (":" + spec if spec else "") + "}")
    tail = body[pos:]
    if "%" in tail or i != len(args):
        return None
    parts.append(_escape_braces(tail))
    return _fstring(prefix, quote, parts, exprs)


_FIELD = re.compile(r"^(\d*|[A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[\d+\])*)$")


def format_to_fstring(segment: Segment, node: ast.Call) -> str | None:
    """The f-string equal to `"...".format(...)`, or None where no exact one is found."""
    lit = _literal(segment(node.func.value))  # type: ignore[attr-defined]
    if lit is None:
        return None
    prefix, quote, body = lit
    if "b" in prefix:
        return None
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return None
    positional = list(node.args)
    named = {k.arg: k.value for k in node.keywords}
    try:
        fields = list(string.Formatter().parse(body))
    except ValueError:
        return None
    parts: list[str] = []
    exprs: list[str] = []
    used: Counter = Counter()
    auto = 0
    numbering: set[str] = set()
    for literal, field_name, spec, conversion in fields:
        parts.append(_escape_braces(literal))
        if field_name is None:
            continue
        m = _FIELD.match(field_name)
        if not m or (spec and ("{" in spec or "}" in spec)):
            return None
        head, rest = m.groups()
        if head == "":
            numbering.add("auto")
            arg: ast.AST | None = positional[auto] if auto < len(positional) else None
            key: object = auto
            auto += 1
        elif head.isdigit():
            numbering.add("manual")
            idx = int(head)
            arg = positional[idx] if idx < len(positional) else None
            key = idx
        else:
            arg = named.get(head)
            key = head
        if arg is None or len(numbering) > 1:
            return None
        used[key] += 1
        expr = _field_expr(segment, arg)
        if expr is None:
            return None
        if rest and not isinstance(arg, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
            expr = f"({expr})"
        exprs.append(expr)
        field = expr + rest + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        parts.append("{" + field + "}")
    keys = set(range(len(positional))) | set(named)
    if set(used) != keys:
        return None  # an argument the string never shows: dropping it would drop its side effects
    for key, count in used.items():
        arg = positional[key] if isinstance(key, int) else named[key]
        if count > 1 and any(isinstance(n, ast.Call) for n in ast.walk(arg)):
            return None
    return _fstring(prefix, quote, parts, exprs)
