"""Decide where ``{% generation %}`` tags go in a chat template, from what its instrumented renders showed, and
rewrite the template source accordingly (the second half of ``training_template``).

Every output of the template (text, a ``{{ }}`` tag, one operand of a concatenation) is cut into *pieces*: one per
character for literal text (so a literal can be split where the trained part ends), one per expression otherwise.
Each piece has what it wrote in every occurrence: trained (1), untrained (0), nothing (None), or, for an expression,
one trained run inside untrained text (("R", before, run, after)). Consecutive pieces of one output with the same
kind form a *group*:

- always trained: wrapped in ``{% generation %}``;
- trained for some messages only: ``{% if <cond> %}`` with a tagged and an untagged copy, ``<cond>`` found among
  facts about the message (``find_condition``);
- an expression trained in part: its value taken once and cut at a fixed place (``_tt[7:]``);
- anything else is a ``Problem``, with the line and an example.

Example: pieces of "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}" over a user and an
assistant message: 12 header characters [0, 0], m.role [0, 0], "\\n" [0, 0], m.content [0, 1], "<|im_end|>" [0, 1],
"\\n" [0, 0] -> groups N, M(cond m.role == "assistant"), N.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.errors import ChatTemplateError
from inspector.training_template.jinja_source import Context, TemplateSource, Unit, apply_edits, is_chain_of, parse_expression, render_items, \
    string_literal


@dataclass(frozen=True)
class Problem:
    """A part of the template that cannot carry the tags exactly. ``line``: 1-based line in the template (None when
    the characters come from no output of the template), ``source``: the template text at fault, ``example``: the
    characters it wrote, trained ones in [brackets]."""

    line: int | None
    source: str
    message: str
    example: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        ex = f" (e.g. {self.example!r})" if self.example else ""
        return f"{where}{self.message}{ex}"


@dataclass(frozen=True)
class TemplateEdit:
    """One change: template[orig_start:orig_end] replaced by new template[new_start:new_end]. ``kind``: "wrap"
    (tags only), "split" (an output cut in two where the trained part ends), "conditional" (a tagged and an
    untagged copy under ``{% if %}``)."""

    orig_start: int
    orig_end: int
    new_start: int
    new_end: int
    kind: str
    line: int


@dataclass
class Atom:
    """One output that gets markers: a data unit, or one operand of a var unit."""

    id: int
    unit: Unit
    operand: int  # index into unit.operands (0 for data)

    @property
    def literal(self) -> str | None:
        if self.unit.kind == "data":
            return self.unit.node.data
        return self.unit.operands[self.operand].literal


@dataclass
class Occurrence:
    """One rendering of one atom: where its text sits in the clean render, and the probe answers."""

    atom: int
    start: int
    end: int
    probes: tuple[bool, ...] = ()


def find_condition(pattern: tuple, answers: list[tuple[bool, ...]], features: list[tuple[str, str]]) -> str | None:
    """The simplest test over ``features`` (one fact or its negation, then two joined by ``and``) that is true in
    exactly the occurrences where ``pattern`` is 1 (None: not observed, either way).

    Example: pattern (1, 0, 1), answers [(True,), (False,), (True,)], features [("m is ...", 'm.role == "a"')] ->
    'm.role == "a"'
    """
    literals = [(i, v) for i in range(len(features)) for v in (True, False)]

    def holds(lits, j):
        return all(len(answers[j]) > i and answers[j][i] == v for i, v in lits)

    def fits(lits):
        return all(v is None or holds(lits, j) == bool(v) for j, v in enumerate(pattern))

    def text(lits):
        return " and ".join(features[i][1] if v else f"not {features[i][1]}" for i, v in lits)

    for lit in literals:
        if fits([lit]):
            return text([lit])
    for a in range(len(literals)):
        for b in range(a + 1, len(literals)):
            if literals[a][0] != literals[b][0] and fits([literals[a], literals[b]]):
                return text([literals[a], literals[b]])
    return None


# --- what each output writes -------------------------------------------------------------------------------------

_A, _N, _U, _P = "A", "N", "U", "P"  # trained, not trained, never observed, trained in several runs (an expression)


def _run(mask: np.ndarray) -> Any:
    """What one occurrence of an expression wrote: None (nothing), 1 (all trained), 0 (nothing trained),
    ("R", a, b, c) for one trained run of b characters between a and c untrained ones, "P" for several runs.

    Example: [0, 0, 1, 1, 1, 0] -> ("R", 2, 3, 1)
    """
    if not len(mask):
        return None
    if mask.all():
        return 1
    if not mask.any():
        return 0
    idx = np.flatnonzero(mask)
    a, z = int(idx[0]), int(idx[-1]) + 1
    if not mask[a:z].all():
        return "P"
    return ("R", a, z - a, len(mask) - z)


_CUTS = (("ac", lambda r: (r[1], r[3])), ("ab", lambda r: (r[1], r[2])), ("bc", lambda r: (r[2], r[3])))


def _cut_variants(values: list[Any], answers: list[tuple[bool, ...]], features: list[tuple[str, str]]
                  ) -> list[tuple[str | None, tuple[str, int, int]]] | None:
    """Where to cut the value of an expression that is partly trained: one cut for every trained occurrence —
    ("ac", a, c) a fixed untrained prefix and suffix, ("ab", a, b) a fixed prefix and trained length, ("bc", b, c)
    the same from the end — or up to three cuts, each chosen by a condition on the message (reasoning or not).

    Example: [("R", 7, 20, 0), ("R", 7, 31, 0)] -> [(None, ("ac", 7, 0))]
    """
    runs = [(j, v) for j, v in enumerate(values) if isinstance(v, tuple)]
    if not runs:
        return None
    for mode, pick in _CUTS:
        keys = {pick(v) for _, v in runs}
        if len(keys) == 1:
            return [(None, (mode, *keys.pop()))]
    for mode, pick in _CUTS:
        keys = sorted({pick(v) for _, v in runs})
        if len(keys) > 3:
            continue
        variants: list[tuple[str | None, tuple[str, int, int]]] = []
        for key in keys[:-1]:
            pattern = tuple(None if not isinstance(v, tuple) else int(pick(v) == key) for v in values)
            cond = find_condition(pattern, answers, features)
            if cond is None:
                break
            variants.append((cond, (mode, *key)))
        else:
            return variants + [(None, (mode, *keys[-1]))]
    return None


@dataclass
class _Piece:
    """One character of a literal/text output, or a whole expression output, with what it wrote in every
    occurrence of its output node (see ``_run``)."""

    atom: Atom
    char: int | None
    seen: list[Any] = field(default_factory=list)
    example: str = ""

    @property
    def kind(self) -> Any:
        vals = [v for v in self.seen if v is not None]
        if "P" in vals:
            return _P
        if not vals:
            return _U
        if any(isinstance(v, tuple) for v in vals):
            return ("S", None, tuple(None if v is None else 0 if v == 0 else 1 for v in self.seen))
        if all(v == 1 for v in vals):
            return _A
        if all(v == 0 for v in vals):
            return _N
        return ("M", tuple(self.seen))


@dataclass
class _Group:
    kind: Any  # _A, _N, _P, ("M", pattern) or ("S", cut variants, pattern)
    pieces: list[_Piece]
    cond: str | None = None

    @property
    def pattern(self) -> tuple | None:
        return self.kind[-1] if isinstance(self.kind, tuple) else None

    @property
    def sliced(self) -> bool:
        return isinstance(self.kind, tuple) and self.kind[0] == "S"

    @property
    def wrapped(self) -> bool:
        """Tags go around the whole group (always, or under its condition)."""
        if self.kind == _A:
            return True
        return isinstance(self.kind, tuple) and self.kind[0] == "M" and self.cond is not None


def _compatible(a: tuple, b: tuple) -> tuple | None:
    """Two per-occurrence patterns that agree wherever both were observed, merged. Example: (1, None, 0), (1, 1, None)
    -> (1, 1, 0)."""
    out = []
    for x, y in zip(a, b):
        if x is not None and y is not None and x != y:
            return None
        out.append(x if x is not None else y)
    return tuple(out)


def _pattern(kind: Any, piece: _Piece) -> tuple | None:
    """Per occurrence 1/0/None for a trained or sometimes-trained piece (None for the others)."""
    if kind == _A:
        return tuple(None if v is None else 1 for v in piece.seen)
    if isinstance(kind, tuple) and kind[0] == "M":
        return kind[1]
    return None


def _group(pieces: list[_Piece]) -> list[_Group]:
    """Consecutive pieces with the same kind form a group; never-observed pieces join their neighbour; a sliced
    expression is a group of its own. A trained piece joins a sometimes-trained neighbour when it is empty wherever
    that one is not trained (``content + '<|im_end|>'`` where an empty content leaves the marker untrained)."""
    groups: list[_Group] = []
    pending: list[_Piece] = []
    for p in pieces:
        kind = p.kind
        if kind == _U:
            (groups[-1].pieces if groups else pending).append(p)
            continue
        last = groups[-1] if groups else None
        if last is not None and last.kind == kind and kind in (_A, _N):
            last.pieces.append(p)
            continue
        mine = _pattern(kind, p)
        theirs = None
        if last is not None and last.kind == _A:
            theirs = tuple(None if all(q.seen[j] is None for q in last.pieces) else 1 for j in range(len(p.seen)))
        elif last is not None and isinstance(last.kind, tuple) and last.kind[0] == "M":
            theirs = last.kind[1]
        if mine is not None and theirs is not None and "M" in (kind[0] if isinstance(kind, tuple) else "",
                                                               last.kind[0] if isinstance(last.kind, tuple) else ""):
            merged = _compatible(theirs, mine)
            if merged is not None:
                last.kind = ("M", merged)
                last.pieces.append(p)
                continue
        groups.append(_Group(kind, pending + [p]))
        pending = []
    if pending:
        groups.append(_Group(_N, pending))
    return groups


def _show(text: str, mask: np.ndarray, limit: int = 70) -> str:
    """Characters with the trained runs in [brackets]. Example: ("Hi<e>\\n", [0,0,1,1,1,0]) -> "Hi[<e>]\\n"."""
    out, inside = [], False
    for ch, m in zip(text[:limit], mask[:limit]):
        if m and not inside:
            out.append("[")
        if not m and inside:
            out.append("]")
        inside = bool(m)
        out.append(ch)
    if inside:
        out.append("]")
    return "".join(out) + ("…" if len(text) > limit else "")


@dataclass
class _Observed:
    """Everything the instrumented renders showed."""

    pieces: dict[int, list[_Piece]]  # per output node
    occurrences: dict[int, list[tuple[bool, ...]]]  # per output node: feature answers per occurrence
    reached: set[int]  # unit ids
    problems: list[Problem]
    rendered: int


def observe(src: TemplateSource, atoms: list[Atom], renders: list[tuple[str, list[Occurrence], np.ndarray]]
            ) -> _Observed:
    """Fold the instrumented renders into per-piece observations, output node by output node."""
    by_output: dict[int, list[Atom]] = {}
    for a in atoms:
        by_output.setdefault(a.unit.output, []).append(a)
    pieces: dict[int, list[_Piece]] = {}
    for out_id, out_atoms in by_output.items():
        pieces[out_id] = [_Piece(a, i) for a in out_atoms
                          for i in (range(len(a.literal)) if a.literal is not None else [None])]
    occurrences: dict[int, list[tuple[bool, ...]]] = {k: [] for k in by_output}
    reached: set[int] = set()
    problems: list[Problem] = []
    for text, occ, trained in renders:
        owned = np.zeros(len(text), dtype=bool)
        i = 0
        while i < len(occ):
            first = atoms[occ[i].atom]
            out_atoms = by_output[first.unit.output]
            if first is not out_atoms[0]:  # cannot happen: the atoms of an output node render together, in order
                i += 1
                continue
            run = occ[i:i + len(out_atoms)]
            i += len(out_atoms)
            occurrences[first.unit.output].append(run[0].probes)
            spans = {o.atom: (o.start, o.end) for o in run}
            for p in pieces[first.unit.output]:
                start, end = spans.get(p.atom.id, (0, 0))
                reached.add(p.atom.unit.id)
                owned[start:end] = True
                if p.char is not None:
                    p.seen.append(int(trained[start + p.char]) if end - start == len(p.atom.literal) else None)
                    continue
                value = _run(trained[start:end])
                p.seen.append(value)
                if isinstance(value, tuple) and not p.example:
                    p.example = _show(text[start:end], trained[start:end])
                if value == "P":
                    p.example = _show(text[start:end], trained[start:end])
        stray = trained & ~owned
        if stray.any():
            k = int(np.argmax(stray))
            problems.append(Problem(None, "", "trained characters are written by no output of the template that "
                                    "writes straight to the result (a {% call %} or {% filter %} block?): they "
                                    "cannot be wrapped", text[k:k + 40]))
    return _Observed(pieces, occurrences, reached, problems, len(renders))


# --- the rewrite -------------------------------------------------------------------------------------------------

def decide(pieces: list[_Piece], answers: list[tuple[bool, ...]], features: list[tuple[str, str]],
            problems: list[Problem], src: TemplateSource) -> list[_Group]:
    """Group the pieces of one output node and find the condition of each group trained for some messages only."""
    groups = _group(pieces)
    for g in groups:
        p = g.pieces[0]
        if g.sliced:
            variants = _cut_variants(p.seen, answers, features)
            if variants is None:
                g.kind = _P
            else:
                g.kind = ("S", variants, g.kind[2])
        if g.kind == _P:
            problems.append(Problem(p.atom.unit.line, _piece_source(src, p), "one expression writes trained and "
                                    "untrained characters in one value, cut at no fixed place: it cannot be split",
                                    p.example))
            continue
        pattern = g.pattern
        if g.kind == _A and len(g.pieces) == 1 and p.char is None and None in p.seen:
            # transformers marks a token an empty generation block falls inside: guard the block with the value
            g.kind = ("S", [(None, ("all", 0, 0))], tuple(None if v is None else 1 for v in p.seen))
            continue
        if pattern is None or all(v in (1, None) for v in pattern):
            continue
        g.cond = find_condition(pattern, answers, features)
        if g.cond is not None and len(g.pieces) == 1 and p.char is None and None in p.seen:
            g.kind = ("S", [(None, ("all", 0, 0))], pattern)  # an empty value must not leave an empty block
        if g.cond is None:
            names = ", ".join(name for name, _ in features) or "none: not inside a loop over messages"
            problems.append(Problem(p.atom.unit.line, _piece_source(src, p), "this output is trained for some "
                                    f"messages and not for others, and no fact about the message ({names}) tells "
                                    "them apart"))
    return groups


def _piece_source(src: TemplateSource, p: _Piece) -> str:
    u = p.atom.unit
    if u.kind == "data":
        return u.node.data
    return u.operands[p.atom.operand].text


def _segment(unit: Unit, pieces: list[_Piece], env: Any) -> str:
    """Jinja expression writing exactly ``pieces`` of a var unit (whole operands, or parts of a literal)."""
    from jinja2 import nodes

    parts: list[tuple[int, str | None]] = []
    for p in pieces:
        if parts and parts[-1][0] == p.atom.operand:
            if p.char is not None:
                parts[-1] = (p.atom.operand, parts[-1][1] + p.atom.literal[p.char])
            continue
        parts.append((p.atom.operand, None if p.char is None else p.atom.literal[p.char]))
    texts, leaves = [], []
    for i, (k, sub) in enumerate(parts):
        op = unit.operands[k]
        whole = sub is None or sub == op.literal
        text = op.text if whole else string_literal(sub)
        texts.append(text if i == 0 else f"{op.joiner} {text}")
        leaves.append(op.node if whole else nodes.Const(sub))
    expr = " ".join(texts)
    parsed = parse_expression(env, expr)
    if parsed is None or not is_chain_of(parsed, leaves):
        raise ChatTemplateError(f"line {unit.line}: could not rebuild {expr!r} as its own expression")
    return expr


def _copy_items(pieces: list[_Piece], env: Any) -> list[tuple[str, str]]:
    """The untagged copy of a group for the ``{% else %}`` branch: one ``{{ }}`` per unit it touches."""
    items: list[tuple[str, str]] = []
    i = 0
    while i < len(pieces):
        unit = pieces[i].atom.unit
        j = i
        while j < len(pieces) and pieces[j].atom.unit is unit:
            j += 1
        run = pieces[i:j]
        if unit.kind == "data":
            items.append(("var", string_literal("".join(unit.node.data[p.char] for p in run))))
        else:
            items.append(("var", _segment(unit, run, env)))
        i = j
    return items


def _sliced_items(g: _Group, env: Any) -> list[tuple[str, str]]:
    """A sliced expression: its value once, cut where the trained run starts and ends.

    Example: ("ac", 7, 0) on ``content`` -> {% for _tt in [(content)|string] %}{{ _tt[:7] }}{% generation %}
    {{ _tt[7:] }}{% endgeneration %}{% endfor %}
    """
    p = g.pieces[0]
    expr = _segment(p.atom.unit, [p], env)
    body: list[tuple[str, str]] = [("block", f"for _tt in [({expr})|string]")]
    variants = g.kind[1]
    for k, (cond, cut) in enumerate(variants):
        if len(variants) > 1:
            body.append(("block", f"if {cond}" if k == 0 else f"elif {cond}" if cond else "else"))
        body.extend(_slice_items(*cut))
    if len(variants) > 1:
        body.append(("block", "endif"))
    body.append(("block", "endfor"))
    if g.cond is None:
        return body
    return [("block", f"if {g.cond}"), *body, ("block", "else"), ("var", expr), ("block", "endif")]


def _slice_items(mode: str, x: int, y: int) -> list[tuple[str, str]]:
    """Write ``_tt`` in three slices, the middle one (the trained run) inside a generation block; mode "all": the
    whole value, in a block only when it is not empty."""
    if mode == "all":
        return [("block", "if _tt"), ("block", "generation"), ("var", "_tt"), ("block", "endgeneration"),
                ("block", "endif")]
    if mode == "ac":
        pre, mid, post = (f"_tt[:{x}]" if x else None), (f"_tt[{x}:-{y}]" if y else f"_tt[{x}:]"), \
            (f"_tt[-{y}:]" if y else None)
    elif mode == "ab":
        pre, mid, post = (f"_tt[:{x}]" if x else None), f"_tt[{x}:{x + y}]", f"_tt[{x + y}:]"
    else:
        pre, mid, post = f"_tt[:-{x + y}]", (f"_tt[-{x + y}:-{y}]" if y else f"_tt[-{x}:]"), \
            (f"_tt[-{y}:]" if y else None)
    return ([("var", pre)] if pre else []) + [("block", "generation"), ("var", mid), ("block", "endgeneration")] + \
        ([("var", post)] if post else [])


def _open(g: _Group) -> list[tuple[str, str]]:
    if g.kind == _A:
        return [("block", "generation")]
    return [("block", f"if {g.cond}"), ("block", "generation")]


def _close(g: _Group, env: Any) -> list[tuple[str, str]]:
    if g.kind == _A:
        return [("block", "endgeneration")]
    return [("block", "endgeneration"), ("block", "else"), *_copy_items(g.pieces, env), ("block", "endif")]


def rewrite(src: TemplateSource, decided: dict[int, list[_Group]], problems: list[Problem]
            ) -> tuple[str, list[TemplateEdit], bool]:
    """Apply the decisions: tags inserted at output boundaries and inside text; ``{{ }}`` tags rebuilt where a
    concatenation, a literal or a value is cut. Returns the new template, its edits and whether only tags were
    inserted."""
    env = src.env
    insertions: dict[int, list[tuple[str, str]]] = {}
    kinds_at: dict[int, set[str]] = {}
    internal: dict[int, dict[int, list[tuple[str, str]]]] = {}  # unit id -> id(piece) -> items before it
    rebuilt: dict[int, list[_Group]] = {}
    strip_left: set[int] = set()
    only_tags = True
    for out_id, groups in decided.items():
        if not any(g.wrapped or (g.sliced and g.kind[-1] and (g.cond or all(v != 0 for v in g.pattern)))
                   for g in groups):
            continue
        out_units = [u for u in src.units if u.output == out_id]
        for g in groups:
            if g.sliced and (g.cond is not None or all(v != 0 for v in g.pattern)):
                rebuilt.setdefault(g.pieces[0].atom.unit.id, []).append(g)
                only_tags = False
        cuts: list[tuple[_Piece | None, list[tuple[str, str]], set[str]]] = []
        for gi, g in enumerate(groups):
            prev = groups[gi - 1] if gi else None
            items = (_close(prev, env) if prev is not None and prev.wrapped else []) + (_open(g) if g.wrapped else [])
            kinds = {"conditional" if x.kind != _A else "wrap" for x in (prev, g) if x is not None and x.wrapped}
            cuts.append((g.pieces[0], items, kinds))
        last = groups[-1]
        cuts.append((None, _close(last, env) if last.wrapped else [],
                     ({"conditional" if last.kind != _A else "wrap"} if last.wrapped else set())))
        for piece, items, kinds in cuts:
            if not items:
                continue
            if any(x[1].startswith("if ") for x in items):
                only_tags = False
            unit = piece.atom.unit if piece is not None else out_units[-1]
            if unit.kind == "data" and unit.first and src.tokens[unit.first - 1].type == "raw_begin":
                problems.append(Problem(unit.line, unit.node.data[:40], "the trained part sits in a {% raw %} "
                                        "block, where no tag can go"))
                continue
            if piece is not None and piece.atom.operand == 0 and piece.char in (None, 0) and unit.kind == "var" \
                    and src.tokens[unit.first].value.endswith("-"):
                pos = src.tokens[unit.first].start  # before a "{{-": the tag strips the whitespace in its place
                strip_left.add(pos)
            elif piece is None or (piece.atom.operand == 0 and piece.char in (None, 0)):
                pos = _boundary(src, out_units, unit, before=piece is not None)
            elif unit.kind == "data":
                pos = src.tokens[unit.first].start + piece.char
                kinds = kinds | {"split"}
            else:
                internal.setdefault(unit.id, {})[id(piece)] = items
                rebuilt.setdefault(unit.id, [])
                only_tags = False
                continue
            insertions.setdefault(pos, []).extend(items)
            kinds_at.setdefault(pos, set()).update(kinds)
    edits: list[tuple[int, int, str]] = []
    meta: list[tuple[int, str]] = []
    positions = sorted(insertions)
    for i, pos in enumerate(positions):
        tok = src.data_token_at(pos)
        lo = max((q for q in positions[:i] if tok is not None and q >= tok.start), default=None)
        hi = min((q for q in positions[i + 1:] if tok is not None and q <= tok.raw_end), default=None)
        ctx = src.context(pos, lo, hi)
        if pos in strip_left:
            ctx = Context("", False, "", False, strip_left=True)
        edits.append((pos, pos, render_items(insertions[pos], ctx, ctx)))
        meta.append((pos, "conditional" if "conditional" in kinds_at[pos] else
                     "split" if "split" in kinds_at[pos] else "wrap"))
    units = {u.id: u for u in src.units}
    for uid, sliced in rebuilt.items():
        unit = units[uid]
        pieces = [p for g in decided[unit.output] for p in g.pieces if p.atom.unit is unit]
        items = _unit_items(unit, pieces, internal.get(uid, {}), {id(g.pieces[0]): g for g in sliced}, env)
        start, stop, text = _tag_sequence(src, unit, items, _after(src, unit) in insertions)
        edits.append((start, stop, text))
        conditional = any(x[1].startswith("if ") for x in items)
        meta.append((start, "conditional" if conditional else "split"))
    new, spans = apply_edits(src, edits)
    order = sorted(range(len(edits)), key=lambda k: (edits[k][0], edits[k][1]))
    out_edits = []
    for (a, b, na, nb), k in zip(spans, order):
        pos, kind = meta[k]
        out_edits.append(TemplateEdit(a, b, na, nb, kind, src.line(pos)))
    return new, out_edits, only_tags


def _boundary(src: TemplateSource, out_units: list[Unit], unit: Unit, before: bool) -> int:
    """The position of a tag inserted before ``unit`` (or after it, ``before=False``): right after the previous
    token (for text, after the part Jinja keeps), so whitespace control around the unit still applies as before."""
    if before:
        k = out_units.index(unit)
        if k == 0:
            return src.tokens[unit.first - 1].end if unit.first else 0
        unit = out_units[k - 1]
    return _after(src, unit)


def _after(src: TemplateSource, unit: Unit) -> int:
    """Right after a unit: after a ``-}}`` itself (not the whitespace it strips), so a tag lands on the same line."""
    end = src.tokens[unit.last]
    return end.start + 3 if unit.kind == "var" and end.value.startswith("-") else end.end


def _unit_items(unit: Unit, pieces: list[_Piece], cuts: dict[int, list[tuple[str, str]]],
                sliced: dict[int, _Group], env: Any) -> list[tuple[str, str]]:
    """A ``{{ }}`` tag as a sequence of tags: its pieces cut into expressions, with the tags between them."""
    items: list[tuple[str, str]] = []
    segment: list[_Piece] = []

    def flush() -> None:
        if segment:
            items.append(("var", _segment(unit, segment, env)))
            segment.clear()

    for p in pieces:
        if id(p) in cuts:
            flush()
            items.extend(cuts[id(p)])
        if id(p) in sliced:
            flush()
            items.extend(_sliced_items(sliced[id(p)], env))
            continue
        segment.append(p)
    flush()
    return items


def _tag_sequence(src: TemplateSource, unit: Unit, items: list[tuple[str, str]], followed: bool
                  ) -> tuple[int, int, str]:
    """Replace a ``{{ }}`` tag by ``items``: the first takes over its left whitespace control, the last its right
    one (``{{-`` -> ``{%-``; a plain ``{{`` where a block tag would lstrip -> ``{%+``; and so on). ``followed``: tags
    are inserted right after it (they take care of the text that follows)."""
    begin, end = src.tokens[unit.first], src.tokens[unit.last]
    left_minus, right_minus = begin.value.endswith("-"), end.value.startswith("-")
    start, stop = begin.start, end.start + (3 if right_minus else 2)
    left = src.context(start)
    right = Context("", False, "", False) if followed and not right_minus else src.context(stop)
    out = []
    for i, (kind, text) in enumerate(items):
        first, last = i == 0, i == len(items) - 1
        if kind == "block":
            lmod = ("-" if left_minus else "+" if left.lstrip_would_eat else "") if first else ""
            rmod = ("-" if right_minus or right.right_stripped else "+" if right.right.startswith("\n") else "") \
                if last else ""
            out.append("{%" + lmod + " " + text + " " + rmod + "%}")
        else:
            lmod = "-" if first and left_minus else ""
            rmod = "-" if last and (right_minus or right.right_stripped) else ""
            out.append("{{" + lmod + " " + text + " " + rmod + "}}")
    return start, stop, "".join(out)
