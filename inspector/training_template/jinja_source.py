"""Where each output of a Jinja chat template sits in its source text, and how to insert tags there without
changing what the template renders.

Jinja's AST keeps line numbers only. ``TemplateSource`` lexes the template with the environment's own lexer rules
(``trim_blocks``, ``lstrip_blocks`` and ``-``/``+`` whitespace control included) while recording the character span
of every token, parses that token stream, and maps every output of the template that is written straight to the
result (not inside a macro, ``{% set %}`` block, ``{% filter %}`` or ``{% call %}``) back to its source: a *data*
unit (text between tags) or a *var* unit (a ``{{ ... }}`` tag), the latter split into its operands when it is a
string concatenation (``+`` / ``~``).

Inserting ``{% generation %}`` is not free in a template rendered with ``trim_blocks`` and ``lstrip_blocks``: a block
tag eats the newline after it and the indentation before it. ``block_tag`` picks ``{%+``, ``+%}`` or ``-%}`` so the
token stream stays the same; ``same_tokens_apart_from`` proves it on the result.

Example: "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}{% endfor %}" has one unit, a var tag with
the operands "'<|im_start|>'", "m.role" and "'\\n'" (two string literals, one expression).

What it leaves out: line statements and ``{% extends %}``/``{% include %}`` (transformers' environment enables none
of them for chat templates), and outputs inside ``{% raw %}`` blocks (kept as data that is never split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from inspector.errors import ChatTemplateError

_NEWLINE = re.compile(r"(\r\n|\r|\n)")
_WHITESPACE = re.compile(r"\s+")
_BUFFERED = ("Macro", "CallBlock", "FilterBlock", "AssignBlock")  # output collected into a value, not the result


@dataclass(frozen=True)
class Token:
    """One lexer token. ``start``/``end``: span in the normalized source (for data: the text Jinja keeps after
    whitespace control, with ``raw_end`` where the stripped tail ends). ``line_start``: the previous token ended
    with a newline (Jinja's ``line_starting``, which decides ``lstrip_blocks`` for a tag at the start of the text)."""

    index: int
    type: str
    value: str
    start: int
    end: int
    raw_end: int
    line_start: bool


@dataclass
class Operand:
    """One operand of a string concatenation in a ``{{ }}`` tag (or the whole expression when it is none).
    ``literal``: the string when the operand is a string literal. ``joiner``: the operator text before it."""

    start: int
    end: int
    text: str
    node: Any
    literal: str | None = None
    joiner: str = ""


@dataclass
class Unit:
    """One output written straight to the rendered text: a data token or a ``{{ }}`` tag.

    ``loops``: target names of the enclosing ``{% for %}`` loops, outermost first; ``innermost_loop``: the name whose
    ``loop`` variable is in scope (None when the innermost loop unpacks a tuple).
    """

    id: int
    kind: str  # "data" or "var"
    output: int  # the Output node it belongs to (its units always render together, in order)
    line: int
    first: int  # token index: the data token, or the tag's variable_begin
    last: int  # token index: the data token, or the tag's variable_end
    node: Any
    operands: list[Operand] = field(default_factory=list)
    loops: tuple[str, ...] = ()
    innermost_loop: str | None = None

    @property
    def is_chain(self) -> bool:
        return len(self.operands) > 1


def normalize_newlines(source: str) -> tuple[str, list[int]]:
    """Jinja's view of the source (every line break a "\\n", the final newline dropped) and, for each of its
    positions (and one past the end), the position in the original text.

    Example: "a\\r\\nb\\n" -> ("a\\nb", [0, 1, 3, 4])
    """
    parts = _NEWLINE.split(source)
    lines, breaks = parts[::2], parts[1::2]
    if lines[-1] == "":  # keep_trailing_newline=False, as in transformers' environment
        lines.pop()
        breaks = breaks[: len(lines) - 1] if lines else []
    text, positions, orig = [], [], 0
    for i, line in enumerate(lines):
        text.append(line)
        positions.extend(range(orig, orig + len(line)))
        orig += len(line)
        if i < len(lines) - 1:
            text.append("\n")
            positions.append(orig)
            orig += len(breaks[i])
    positions.append(orig)
    return "".join(text), positions


def chat_environment() -> Any:
    """transformers' sandboxed Jinja environment for chat templates (shared; only read here)."""
    from transformers.utils.chat_template_utils import _cached_compile_jinja_template

    return _cached_compile_jinja_template("").environment


def positioned_tokens(lexer: Any, source: str) -> list[Token]:
    """Jinja's ``Lexer.tokeniter`` over a normalized source, recording where each token sits.

    The loop mirrors jinja2's own (3.1) rule by rule, with the lexer's compiled rules; ``TemplateSource`` checks the
    result against ``tokeniter`` so a change in Jinja cannot go unnoticed.
    """
    from jinja2.lexer import Failure, OptionalLStrip, ignore_if_empty

    out: list[Token] = []
    pos, stack, balancing, line_starting = 0, ["root"], [], True
    statetokens = lexer.rules["root"]

    def add(kind: str, value: str, start: int, end: int, raw_end: int, ls: bool) -> None:
        if value or kind not in ignore_if_empty:
            out.append(Token(len(out), kind, value, start, end, raw_end, ls))

    while True:
        for regex, tokens, new_state in statetokens:
            m = regex.match(source, pos)
            if m is None:
                continue
            if balancing and tokens in ("variable_end", "block_end", "linestatement_end"):
                continue
            if isinstance(tokens, tuple):
                groups = list(m.groups())
                text_end = m.end(1)
                if isinstance(tokens, OptionalLStrip):
                    text = groups[0]
                    sign = next(g for g in groups[2::2] if g is not None)
                    if sign == "-":
                        groups[0] = text.rstrip()
                    elif sign != "+" and lexer.lstrip_blocks and not m.groupdict().get("variable_begin"):
                        l_pos = text.rfind("\n") + 1
                        if (l_pos > 0 or line_starting) and _WHITESPACE.fullmatch(text, l_pos):
                            groups[0] = text[:l_pos]
                for idx, token in enumerate(tokens):
                    if isinstance(token, Failure):
                        raise ChatTemplateError("Chat template does not lex (unclosed tag or comment)")
                    if token == "#bygroup":
                        key, value = next((k, v) for k, v in m.groupdict().items() if v is not None)
                        add(key, value, m.start(key), m.end(key), m.end(key), line_starting)
                    else:
                        start = m.start(idx + 1)
                        raw_end = text_end if idx == 0 else m.end(idx + 1)
                        add(token, groups[idx], start, start + len(groups[idx]), raw_end, line_starting)
            else:
                data = m.group()
                if tokens == "operator":
                    if data in "([{":
                        balancing.append(data)
                    elif data in ")]}" and balancing:
                        balancing.pop()
                add(tokens, data, m.start(), m.end(), m.end(), line_starting)
            line_starting = m.group()[-1:] == "\n"
            if new_state == "#pop":
                stack.pop()
            elif new_state == "#bygroup":
                stack.append(next(k for k, v in m.groupdict().items() if v is not None))
            elif new_state is not None:
                stack.append(new_state)
            statetokens = lexer.rules[stack[-1]]
            pos = m.end()
            break
        else:
            if pos >= len(source):
                return out
            raise ChatTemplateError(f"Chat template does not lex at character {pos}")


class TemplateSource:
    """A chat template's tokens with their positions, its AST, and its output units (see the module docstring).

    Raises ``ChatTemplateError`` when the template does not parse.
    """

    def __init__(self, template: str, env: Any | None = None):
        import jinja2
        from jinja2.lexer import TokenStream
        from jinja2.parser import Parser

        self.original = template
        self.env = env or chat_environment()
        self.source, self.positions = normalize_newlines(template)
        try:
            reference = list(self.env.lexer.tokeniter(template, None))
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"Chat template does not parse (line {exc.lineno}): {exc.message}") from exc
        self.tokens = positioned_tokens(self.env.lexer, self.source)
        if [(t.type, t.value) for t in self.tokens] != [(k, v) for _, k, v in reference]:
            raise ChatTemplateError("Chat template: the positioned lexer disagrees with Jinja's (unsupported Jinja "
                                    "version?)")
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.source)]
        # parse a stream whose "line numbers" are token indices: every node then names the token it starts at
        triples = ((t.index, t.type, t.value) for t in self.tokens)
        parser = Parser(self.env, "", None, None)
        parser.stream = TokenStream(self.env.lexer.wrap(triples), None, None)
        try:
            self.ast = parser.parse()
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"Chat template does not parse: {exc.message}") from exc
        self._var_tags = self._pair_var_tags()
        self.units = list(self._find_units())

    # --- positions ---------------------------------------------------------------------------------------------

    def line(self, pos: int) -> int:
        """1-based line of a normalized position."""
        import bisect

        return bisect.bisect_right(self.line_starts, pos)

    def original_pos(self, pos: int) -> int:
        return self.positions[min(pos, len(self.positions) - 1)]

    def _pair_var_tags(self) -> list[tuple[int, int]]:
        tags, begin = [], None
        for t in self.tokens:
            if t.type == "variable_begin":
                begin = t.index
            elif t.type == "variable_end" and begin is not None:
                tags.append((begin, t.index))
                begin = None
        return tags

    def _tag_of(self, token_index: int) -> tuple[int, int]:
        import bisect

        i = bisect.bisect_right(self._var_tags, (token_index, len(self.tokens))) - 1
        b, e = self._var_tags[i]
        if not b < token_index < e:
            raise ChatTemplateError(f"Chat template: no {{{{ }}}} tag holds token {token_index}")
        return b, e

    # --- units -------------------------------------------------------------------------------------------------

    def _find_units(self) -> Iterator[Unit]:
        from jinja2 import nodes

        count = 0
        outputs = 0

        def first_token(node: Any) -> int:
            return min(n.lineno for n in [node, *node.find_all(nodes.Node)] if n.lineno is not None)

        def walk(node: Any, buffered: bool, loops: tuple[str, ...], inner: str | None) -> Iterator[Unit]:
            nonlocal count, outputs
            if isinstance(node, nodes.Output) and not buffered:
                for child in node.nodes:
                    if isinstance(child, nodes.TemplateData):
                        tok = self.tokens[child.lineno]
                        yield Unit(count, "data", outputs, self.line(tok.start), tok.index, tok.index, child, [],
                                   loops, inner)
                    else:
                        b, e = self._tag_of(first_token(child))
                        yield Unit(count, "var", outputs, self.line(self.tokens[b].start), b, e, child,
                                   self._operands(b, e, child), loops, inner)
                    count += 1
                outputs += 1
                return
            is_buffered = buffered or type(node).__name__ in _BUFFERED
            for name, value in node.iter_fields():
                children = value if isinstance(value, list) else [value]
                for child in children:
                    if not isinstance(child, nodes.Node):
                        continue
                    if isinstance(node, nodes.For) and name in ("body", "else_"):
                        target = node.target.name if isinstance(node.target, nodes.Name) else None
                        yield from walk(child, is_buffered, loops + ((target,) if target else ()), target)
                    else:
                        yield from walk(child, is_buffered, loops, inner)

        yield from walk(self.ast, False, (), None)

    def _operands(self, begin: int, end: int, node: Any) -> list[Operand]:
        """The operands of a ``+``/``~`` concatenation at the top of a tag, verified against the AST; the whole
        expression as one operand otherwise (or when splitting would not keep string semantics)."""
        from jinja2 import nodes

        inner = [t for t in self.tokens[begin + 1:end] if t.type != "whitespace"]
        whole = Operand(inner[0].start, inner[-1].end, self.source[inner[0].start:inner[-1].end], node,
                        _literal(node))
        if not isinstance(node, (nodes.Add, nodes.Concat)):
            return [whole]
        pieces: list[list[Token]] = [[]]
        joiners = [""]
        depth = 0
        for t in inner:
            if t.type == "operator" and t.value in "([{":
                depth += 1
            elif t.type == "operator" and t.value in ")]}":
                depth -= 1
            if depth == 0 and t.type == "operator" and t.value in ("+", "~"):
                pieces.append([])
                joiners.append(t.value)
                continue
            pieces[-1].append(t)
        if any(not p for p in pieces):
            return [whole]
        ops = []
        for p, joiner in zip(pieces, joiners):
            text = self.source[p[0].start:p[-1].end]
            parsed = parse_expression(self.env, text)
            if parsed is None:
                return [whole]
            ops.append(Operand(p[0].start, p[-1].end, text, parsed, _literal(parsed), joiner))
        if not is_chain_of(node, [o.node for o in ops]):
            return [whole]
        # `a + b` is text concatenation only for strings: split when a literal string forces it (str + x fails for
        # anything but a string) or every joiner is `~` (which converts to text)
        if not any(o.literal is not None for o in ops) and any(j == "+" for j in joiners):
            return [whole]
        return ops


    # --- inserting tags ------------------------------------------------------------------------------------------

    def data_token_at(self, pos: int) -> Token | None:
        """The data token whose text (kept part plus stripped tail) holds position ``pos``."""
        for t in self.tokens:
            if t.type == "data" and t.start <= pos <= t.raw_end:
                return t
            if t.start > pos:
                return None
        return None

    def next_token_start(self, pos: int) -> int:
        return next((t.start for t in self.tokens if t.start >= pos and t.end > t.start), len(self.source))

    def context(self, pos: int, lo: int | None = None, hi: int | None = None) -> "Context":
        """What surrounds a tag inserted at ``pos``; ``lo``/``hi``: other insertions in the same text before/after it
        (they become boundaries of the text Jinja sees)."""
        tok = self.data_token_at(pos)
        if tok is None:
            right = self.source[pos:self.next_token_start(pos)]
            return Context("", False, right, bool(right))
        start = tok.start if lo is None or lo < tok.start else lo
        end = tok.raw_end if hi is None or hi > tok.raw_end else hi
        right = self.source[pos:end]
        return Context(self.source[start:pos], tok.line_start and start == tok.start, right,
                       pos >= tok.end and bool(right))


@dataclass(frozen=True)
class Context:
    """The text a tag inserted at some position touches: ``left`` (kept text before it, back to the previous tag),
    ``line_start`` (that text starts a line), ``right`` (text after it up to the next tag) and ``right_stripped``
    (Jinja strips ``right`` anyway: it is whitespace that whitespace control removed)."""

    left: str
    line_start: bool
    right: str
    right_stripped: bool
    strip_left: bool = False  # the tag sits where a "{{-" stood: it takes over stripping the whitespace before it

    @property
    def lstrip_would_eat(self) -> bool:
        """``lstrip_blocks`` would remove the indentation before a block tag here."""
        l_pos = self.left.rfind("\n") + 1
        return (l_pos > 0 or self.line_start) and bool(_WHITESPACE.fullmatch(self.left, l_pos))


def block_tag(statement: str, left: Context | None = None, right: Context | None = None) -> str:
    """``{% statement %}`` with the whitespace control that keeps the text around it as it was: ``{%+`` where
    ``lstrip_blocks`` would eat indentation before it, ``-%}`` where the text after it is stripped anyway, ``+%}``
    where ``trim_blocks`` would eat the newline after it.

    Example: block_tag("endgeneration", right=Context("", False, "\n<|im_start|>", False)) -> "{% endgeneration +%}"
    (an opening ``generation`` tag is shielded by an empty ``{{ '' }}`` instead, so TRL's regex still finds it)
    """
    lmod = "-" if left is not None and left.strip_left else "+" if left is not None and left.lstrip_would_eat else ""
    rmod = ""
    if right is not None:
        rmod = "-" if right.right_stripped else "+" if right.right.startswith("\n") else ""
    if statement == "generation":  # TRL finds the tags with a regex that allows "-" but not "+": shield with {{ '' }}
        return ("{{ '' }}" if lmod == "+" else "") + "{%" + lmod.replace("+", "") + " generation " + \
            rmod.replace("+", "") + "%}" + ("{{ '' }}" if rmod == "+" else "")
    return "{%" + lmod + " " + statement + " " + rmod + "%}"


def var_tag(expression: str, right: Context | None = None) -> str:
    """``{{ expression }}``; ``-}}`` where the text after it is stripped anyway (a ``{{ }}`` tag never triggers
    ``lstrip_blocks`` for the tag that follows, so that text would otherwise stay)."""
    return "{{ " + expression + (" -}}" if right is not None and right.right_stripped else " }}")


def render_items(items: list[tuple[str, str]], left: Context | None, right: Context | None) -> str:
    """Tags inserted together at one position: ``("block", statement)`` or ``("var", expression)`` items; the first
    gets the left context, the last the right one."""
    out = []
    for i, (kind, text) in enumerate(items):
        lc = left if i == 0 else None
        rc = right if i == len(items) - 1 else None
        out.append(block_tag(text, lc, rc) if kind == "block" else var_tag(text, rc))
    return "".join(out)


def apply_edits(source: "TemplateSource", edits: list[tuple[int, int, str]]) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Apply (start, end, text) edits given in normalized positions to the original template text. Returns the new
    text and, per edit, (original start, original end, new start, new end)."""
    out, spans, cursor, shift = [], [], 0, 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        a, b = source.original_pos(start), source.original_pos(end)
        if a < cursor:
            raise ValueError("overlapping template edits")
        out.append(source.original[cursor:a])
        new_start = a + shift
        out.append(text)
        spans.append((a, b, new_start, new_start + len(text)))
        shift += len(text) - (b - a)
        cursor = b
    out.append(source.original[cursor:])
    return "".join(out), spans


def same_tokens_apart_from(env: Any, original: str, new: str, names: tuple[str, ...]) -> bool:
    """True when ``new`` lexes to the tokens of ``original`` plus block tags named in ``names`` and empty
    ``{{ '' }}`` tags (and nothing else): the two render the same text for every input, apart from what those tags
    do."""
    def stream(text: str) -> list[tuple[str, str]]:
        toks = [(k, v) for _, k, v in env.lexer.tokeniter(text, None) if k != "whitespace"]
        out: list[tuple[str, str]] = []
        i = 0
        while i < len(toks):
            if (toks[i][0] == "block_begin" and i + 2 < len(toks) and toks[i + 1] in [("name", n) for n in names]
                    and toks[i + 2][0] == "block_end"):
                i += 3
                continue
            if (toks[i][0] == "variable_begin" and i + 2 < len(toks) and toks[i + 1] in (("string", "''"),)
                    and toks[i + 2][0] == "variable_end" and not toks[i][1].endswith("-")
                    and not toks[i + 2][1].startswith("-")):
                i += 3  # an empty {{ '' }} writes nothing (it shields a tag from trim_blocks/lstrip_blocks)
                continue
            kind, value = toks[i]
            if kind.endswith("_begin"):
                value = value.rstrip("+")  # "{%+" only switches lstrip_blocks off: compare the text it kept
            if kind.endswith("_end"):  # whitespace a "-%}" or "%}\n" consumed shows up in the data tokens anyway
                value = value.lstrip("+").strip()
            if kind == "data" and out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + value)
            else:
                out.append((kind, value))
            i += 1
        return out

    try:
        return stream(original) == stream(new)
    except Exception:  # the new text does not lex
        return False


def _literal(node: Any) -> str | None:
    from jinja2 import nodes

    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def parse_expression(env: Any, text: str) -> Any | None:
    """The AST of one expression, or None when ``text`` is not exactly one expression."""
    import jinja2
    from jinja2 import nodes

    try:
        body = env.parse("{{ " + text + " }}").body
    except jinja2.TemplateSyntaxError:
        return None
    if len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1:
        return body[0].nodes[0]
    return None


def is_chain_of(node: Any, operands: list[Any]) -> bool:
    """``node`` is a tree of ``+``/``~`` whose leaves, in order, are ``operands`` (compared as ASTs).

    Example: the AST of "'a' + b ~ 'c'" is a chain of ['a', b, 'c'].
    """
    from jinja2 import nodes

    def match(n: Any, i: int) -> int | None:
        if i < len(operands) and n == operands[i]:
            return i + 1
        if isinstance(n, nodes.Add):
            j = match(n.left, i)
            return None if j is None else match(n.right, j)
        if isinstance(n, nodes.Concat):
            for child in n.nodes:
                i = match(child, i)
                if i is None:
                    return None
            return i
        return None

    return match(node, 0) == len(operands)


def string_literal(value: str) -> str:
    """Jinja source of a string literal. Example: "<|im_end|>\\n" -> "'<|im_end|>\\\\n'"."""
    out = value.replace("\\", "\\\\").replace("'", "\\'")
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return "'" + out + "'"
