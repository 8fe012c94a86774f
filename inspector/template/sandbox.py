"""Memory bounds for chat templates: every step that can make a value grow is sized before it runs.

Jinja's sandbox keeps a template away from Python's internals, not from asking for memory. One C-level step can
ask for gigabytes before any time limit fires: ``'x'.ljust(10**10)``, ``'%10000000000s' % 'x'``,
``'{:>10000000000}'.format('x')``, ``s|indent(10**9)``, ``x|tojson(indent=10**9)``, ``('x'*10**6)|replace('x',
'y'*1000)``, or forty ``{% set s = s ~ s %}``. ``install(env, current)`` guards every place where a template makes
a new value, and checks the size the result WOULD have before the step runs:

- the operators ``+``, ``*``, ``%`` (strings, lists, printf formats) and ``**``, ``//``, ``*`` on huge numbers,
  through the sandbox's ``call_binop``;
- ``~`` (``str_join``/``markup_join``), ``{% set %}...{% endset %}``, macro and ``{% filter %}`` output
  (``concat``), and every printed value that is not a string (``finalize``: printing a list holding one long string
  a thousand times writes it a thousand times);
- every filter: the growing ones (``center``, ``indent``, ``replace``, ``format``, ``join``, ``tojson``,
  ``wordwrap``, ``batch``, ``slice``, ``urlize``, ``escape``, ``pprint``, ``string``, ...) are sized before they
  run, all of them after;
- calls of string methods (``ljust``, ``rjust``, ``center``, ``zfill``, ``expandtabs``, ``replace``, ``format``,
  ``join``, ``translate``, ...) and of the ``lipsum`` and ``strftime_now`` globals (``check_call``, used by the
  call hook in ``render``).

Two limits, both from the render's ``RenderLimits``: no single value may exceed ``max_chars`` characters (strings)
or items (lists, counted deep where printing would write them), and the new values one render makes may add up to
``max_bytes`` at most (counted as they are made, so a loop of small steps that keeps its results alive stops too).
What a refused step asks for is never allocated: the template ends with a ``RenderTimeout`` that says what it asked.

The size of a printed container is estimated (a ``repr`` escapes some characters), so the bound holds within a
small constant factor. Left out: the time a step takes (``render``'s time limit), and steps that do not allocate.

Example: check_call("x".ljust, (10**10,), {}, 1000) raises RenderTimeout("Chat template asked for a string of
10,000,000,000 characters (ljust), past the limit of 1,000 characters per value: refused").
"""

from __future__ import annotations

import functools
import re
import string
import sys
from collections.abc import Mapping, MappingView
from typing import Any, Callable

from inspector.errors import RenderTimeout

_BIG_OPERAND = 10**4  # digits / items: arithmetic beyond this is refused (no chat template needs it)
MAX_INT_BITS = _BIG_OPERAND * 4  # bits of any integer operand or result (about 12,000 decimal digits)

_STRINGS = (str, bytes, bytearray)
_SEQUENCES = (list, tuple, set, frozenset)


def refuse(what: str, size: int | float, limit: int, unit: str = "characters") -> RenderTimeout:
    """The error for a step that would pass the limit. Example: refuse("a string (ljust)", 10**10, 1000)."""
    shown = f"{size:,}" if size < 10**30 else "more than 10**30"
    return RenderTimeout(f"Chat template asked for {what} of {shown} {unit}, past the limit of {limit:,} per "
                         "value: refused (RenderLimits.max_chars)")


# --- sizes ----------------------------------------------------------------------------------------------------


def shape(value: Any, limit: int) -> tuple[int, int, int]:
    """(characters, items, depth) of a value, counting a part each time it occurs (what printing it writes), and
    stopping as soon as characters + items pass ``limit``: the cost of a call is at most ``limit`` steps.

    Example: shape(["ab", ["ab", "ab"]], 100) -> (6, 5, 2)
    """
    t = type(value)
    if t is str or t is bytes:
        return len(value), 1, 0
    chars = items = depth = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        items += 1
        if d > depth:
            depth = d
        t = type(v)
        if t is str:  # exact types first: isinstance against the abstract Mapping is slow
            chars += len(v)
        elif t is dict:
            items += 2 * len(v)
            if chars + items > limit:
                return chars, items, depth
            stack.extend((k, d + 1) for k in v)
            stack.extend((x, d + 1) for x in v.values())
        elif t is list or t is tuple:
            items += len(v)
            if chars + items > limit:
                return chars, items, depth
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, _STRINGS):
            chars += len(v)
        elif isinstance(v, bool) or v is None or isinstance(v, float):
            chars += 8
        elif isinstance(v, int):
            chars += v.bit_length() // 3 + 2
        elif isinstance(v, Mapping):
            items += 2 * len(v)
            if chars + items > limit:
                return chars, items, depth
            stack.extend((k, d + 1) for k in v.keys())
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (_SEQUENCES, MappingView)):
            items += len(v)
            if chars + items > limit:
                return chars, items, depth
            stack.extend((x, d + 1) for x in v)
        else:
            attrs = _namespace_attrs(v)
            if attrs is not None:
                stack.append((attrs, d + 1))
            chars += 16  # the repr of another object (a macro, a loop, a cycler) is short
        if chars + items > limit:
            return chars, items, depth
    return chars, items, depth


def weight(value: Any, limit: int) -> int:
    """Characters + items of ``value`` (see ``shape``): about the length of ``str(value)``."""
    if type(value) is str:
        return len(value)
    chars, items, _ = shape(value, limit)
    return chars + items


def _namespace_attrs(value: Any) -> dict | None:
    from jinja2.utils import Namespace

    if isinstance(value, Namespace):
        try:
            return object.__getattribute__(value, "_Namespace__attrs")
        except AttributeError:
            return None
    return None


def cost(value: Any, items: bool = True) -> int:
    """Bytes a new value occupies: the object, and with ``items`` for a list or tuple its string and number items
    too (one level: ``split`` and ``|list`` make new items; ``+`` and ``*`` of lists only copy references).

    Example: cost("abc") == sys.getsizeof("abc"); cost(["ab"]) == sys.getsizeof(["ab"]) + sys.getsizeof("ab")
    """
    t = type(value)
    if t is str or t is bytes or t is bytearray:
        return sys.getsizeof(value)
    if (t is list or t is tuple) and items:
        n = sys.getsizeof(value)
        for x in value:
            if type(x) in (str, int, float, bytes):
                n += sys.getsizeof(x)
        return n
    if isinstance(value, (_STRINGS, _SEQUENCES, Mapping)):
        return sys.getsizeof(value) + (8 * len(value) if isinstance(value, Mapping) else 0)
    return 0


_JSON_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def json_size(value: Any, limit: int, indent: int = 0, sep: int = 2) -> int:
    """An upper estimate of ``len(json.dumps(value, indent=indent))`` (with ``ensure_ascii=False``, as
    transformers' ``tojson``): each string with its escapes, each item with its separator and, with an indent, a
    new line indented to its depth. Stops once past ``limit``.

    Example: json_size({"a": "x\n"}, 100) -> 12 (len('{"a": "x\\n"}') is 11)
    """
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        size += 8 + sep + indent * d
        t = type(v)
        if t is str or isinstance(v, str):
            n = len(v)
            if n <= 256:
                size += 6 * n  # short: the worst case (every character escaped as \u00XX) is cheap to assume
            else:
                size += n + sum(v.count(c) for c in '"\\\n\r\t')
                if _JSON_CONTROL.search(v):
                    size += 5 * len(_JSON_CONTROL.findall(v))
        elif t is dict or isinstance(v, Mapping):
            stack.extend((k, d + 1) for k in v.keys())
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, int) and not isinstance(v, bool):
            size += v.bit_length() // 3
        else:
            size += 24
        if size > limit:
            return size
    return size


def _int_arg(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return len(value)  # an indent or a fill given as text
    return default


# --- operators ------------------------------------------------------------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _number(text: str | None, star: int) -> int:
    if not text:
        return 0
    if text == "*":
        return star
    return int(text) if len(text) <= 18 else 10**18


def printf_size(fmt: str, args: Any, limit: int) -> int:
    """An upper estimate of ``len(fmt % args)``: each conversion writes at most its width, its precision and the
    longest argument. Example: printf_size("%10000000000s", "x", 100) -> about 10**10."""
    if isinstance(args, tuple):
        values = list(args)
    elif isinstance(args, Mapping):
        values = list(args.values())
    else:
        values = [args]
    star = max((abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)), default=0)
    longest = max((weight(v, limit) for v in values), default=0)
    size = len(fmt)
    for m in _PRINTF.finditer(fmt):
        if m.group(3) == "%":
            continue
        size += _number(m.group(1), star) + _number(m.group(2), star) + longest + 32
        if size > limit:
            return size
    return size


def format_size(fmt: str, args: tuple, kwargs: dict, limit: int) -> int:
    """An upper estimate of ``fmt.format(*args, **kwargs)``: widths and precisions written in the specs (or taken
    from the arguments), plus the longest argument per field. Example: format_size("{:>10000000000}", ("x",), {},
    100) -> about 10**10."""
    values = list(args) + list(kwargs.values())
    star = max((abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool)), default=0)
    longest = max((weight(v, limit) for v in values), default=0)
    size = len(fmt)
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return size  # the call itself raises the format error
    for _literal, name, spec, _conv in fields:
        if name is None:
            continue
        size += longest + 32
        for digits in re.findall(r"\d+", spec or ""):
            size += _number(digits, star)
        if spec and "{" in spec:
            size += star * spec.count("{")
        if size > limit:
            return size
    return size


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def int_result_bits(operator: str, left: int, right: int) -> int:
    """An upper bound of the bits of ``left <operator> right`` for integers, computed before the step runs (a
    product has at most the sum of the bit lengths, a power ``bit_length * exponent``, a left shift adds the shift).

    Example: int_result_bits("**", 3 ** 9999, 2000) -> 31,700,000 (3 ** 9999 has 15,850 bits); ("*", 7, 7) -> 6.
    """
    a, b = left.bit_length(), right.bit_length()
    if operator == "**":
        if right < 0 or abs(left) <= 1:
            return max(a, 1)  # a fraction, or 0, 1, -1 to any power
        return a * right
    if operator == "*":
        return a + b
    if operator == "<<":
        return a + max(right, 0)
    return max(a, b) + 1  # + - // % and the rest make nothing longer than their operands


def check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """Refuse an operator whose result would be too large, before it runs."""
    if operator == "+" and type(left) is str and type(right) is str:  # the common case, first
        if len(left) + len(right) > limit:
            raise refuse("a str (+)", len(left) + len(right), limit)
        return

    def big(x: Any) -> bool:
        return _is_int(x) and x.bit_length() > MAX_INT_BITS

    if operator == "**" and _is_int(right) and abs(right) > _BIG_OPERAND:
        raise RenderTimeout(f"Chat template raises a number to the power {right}: refused (too large)")
    if big(left) or big(right):
        raise RenderTimeout(f"Chat template computes with a number of more than {MAX_INT_BITS:,} bits: refused (too "
                            "large)")
    if _is_int(left) and _is_int(right):
        bits = int_result_bits(operator, left, right)
        if bits > MAX_INT_BITS:
            raise RenderTimeout(f"Chat template asked for a number of about {bits:,} bits ({operator}), past the "
                                f"limit of {MAX_INT_BITS:,} bits per number: refused (one such step runs in C for "
                                "seconds to minutes, past any time check)")
    sized = (str, list, tuple, bytes)
    if operator == "*":
        seq, n = (left, right) if isinstance(left, sized) else (right, left)
        if isinstance(seq, sized) and isinstance(n, int) and n * len(seq) > limit:
            raise RenderTimeout(f"Chat template repeats a {type(seq).__name__} {n:,} times: refused (too large)")
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        size = len(left) + len(right)
        if size > limit:
            raise refuse(f"a {type(left).__name__} (+)", size, limit,
                         "characters" if isinstance(left, str) else "items")
    elif operator == "%" and isinstance(left, str):
        size = printf_size(left, right, limit)
        if size > limit:
            raise refuse("a string (the % format)", size, limit)


# --- string methods and globals ---------------------------------------------------------------------------------

def _width(args: tuple, kwargs: dict, name: str = "width", default: int = 0) -> int:
    return _int_arg(args[0] if args else kwargs.get(name, default))


def _replace_size(s: Any, old: Any, new: Any, count: Any) -> int | None:
    """Example: _replace_size("xxx", "x", "yy", -1) -> 6 (three hits, each one character longer)."""
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)) and \
            not (isinstance(s, bytes) and isinstance(old, bytes) and isinstance(new, bytes)):
        return None  # the call raises its own TypeError
    if len(new) <= len(old):
        return len(s)
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _str_method_size(s: Any, name: str, args: tuple, kwargs: dict, limit: int) -> int | None:
    """The size a string method's result may reach, or None for methods that do not grow (find, startswith...)."""
    n = len(s)
    if name in ("ljust", "rjust", "center", "zfill"):
        return max(n, _width(args, kwargs))
    if name == "expandtabs":
        return n + s.count("\t" if isinstance(s, str) else b"\t") * max(_width(args, kwargs, "tabsize", 8), 0)
    if name == "replace":
        old = args[0] if args else kwargs.get("old")
        new = args[1] if len(args) > 1 else kwargs.get("new")
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        return _replace_size(s, old, new, count)
    if name == "format" and isinstance(s, str):
        return format_size(s, args, kwargs, limit)
    if name == "format_map" and isinstance(s, str) and args and isinstance(args[0], Mapping):
        return format_size(s, (), dict(args[0]), limit)
    if name == "join":
        items = args[0] if args else ()
        if not isinstance(items, (list, tuple)):
            return None  # materialized by check_call first
        return sum(weight(x, limit) for x in items) + n * max(len(items) - 1, 0)
    if name == "translate":
        table = args[0] if args else kwargs.get("table")
        values = table.values() if isinstance(table, Mapping) else ()
        longest = max((len(v) for v in values if isinstance(v, (str, bytes))), default=1)
        return n * max(longest, 1)
    if name in ("upper", "lower", "title", "swapcase", "casefold", "capitalize"):
        return n if s.isascii() else 3 * n  # a few characters change case into three ('ΐ'.upper())
    if name == "encode":
        return 4 * n
    if name in ("split", "rsplit", "splitlines", "partition", "rpartition"):
        return n + 1  # pieces of the string: no more items than characters, no more characters than it has
    return None


def check_call(obj: Any, args: tuple, kwargs: dict, limit: int) -> tuple[tuple, int | None]:
    """Size a call before it runs. Returns the arguments to call with (a generator passed to ``join`` is made a
    list first, so it can be sized) and the expected size (None: a call that does not grow values). Raises
    ``RenderTimeout`` for a call whose result would pass ``limit``."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, (str, bytes)):
        if name == "join" and args and not isinstance(args[0], (list, tuple)):
            if isinstance(args[0], (str, bytes)) or not hasattr(args[0], "__iter__"):
                return args, None
            args = (list(args[0]),) + tuple(args[1:])
        size = _str_method_size(owner, name, args, kwargs, limit)
        if size is not None and size > limit:
            raise refuse(f"a string ({name})", size, limit)
        return args, size
    if _is_int(owner) and name == "to_bytes":  # (1).to_bytes(10**10) asks for 10 GB in one step
        size = _int_arg(args[0] if args else kwargs.get("length", 1), 1)
        if size > limit:
            raise refuse("bytes (to_bytes)", size, limit)
        return args, size
    if name == "generate_lorem_ipsum":
        n = _int_arg(args[0] if args else kwargs.get("n", 5), 5)
        most = _int_arg(args[3] if len(args) > 3 else kwargs.get("max", 100), 100)
        size = max(n, 0) * max(most, 0) * 12
        if size > limit:
            raise refuse("a string (lipsum)", size, limit)
        return args, size
    if name == "strftime_now":
        fmt = args[0] if args else kwargs.get("format", "")
        size = 16 * len(fmt) if isinstance(fmt, str) else 0
        if size > limit:
            raise refuse("a string (strftime_now)", size, limit)
        return args, size
    return args, None


# --- filters --------------------------------------------------------------------------------------------------

def _filter_size(name: str, value: Any, args: tuple, kwargs: dict, limit: int) -> int | None:
    """The size a growing filter's result may reach (arguments as the template passed them, without the context
    Jinja passes first), or None for a filter that does not grow its input."""

    def arg(i: int, key: str, default: Any = None) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    if name == "center":
        return max(weight(value, limit), _int_arg(arg(0, "width", 80)))
    if name == "indent":
        text = value if isinstance(value, str) else str(value) if weight(value, limit) <= limit else None
        if text is None:
            return limit + 1
        return len(text) + (text.count("\n") + 1) * max(_int_arg(arg(0, "width", 4)), 0)
    if name == "replace":
        text = value if isinstance(value, str) else str(value) if weight(value, limit) <= limit else None
        if text is None:
            return limit + 1
        return _replace_size(text, str(arg(0, "old", "")), str(arg(1, "new", "")), arg(2, "count"))
    if name == "format" and isinstance(value, str):
        return printf_size(value, kwargs or args, limit)
    if name == "join":
        items = value if isinstance(value, (list, tuple)) else None
        if items is None:
            return None
        return sum(weight(x, limit) for x in items) + len(str(arg(0, "d", ""))) * max(len(items) - 1, 0)
    if name == "tojson":
        indent = arg(1, "indent")
        step = max(_int_arg(indent), 0) if indent is not None else 0
        seps = arg(2, "separators")
        sep = sum(len(s) for s in seps if isinstance(s, str)) if isinstance(seps, (list, tuple)) else 2
        return json_size(value, limit, step, sep)
    if name == "pprint":
        chars, items, depth = shape(value, limit)
        return 2 * chars + items * (depth + 8)
    if name in ("e", "escape", "forceescape") and isinstance(value, str):
        return len(value) + 4 * sum(value.count(c) for c in "&<>\"'")
    if name in ("string", "e", "escape", "forceescape", "xmlattr"):
        chars, items, _ = shape(value, limit)
        return (2 if name == "string" else 6) * chars + 4 * items
    if name == "urlencode":
        chars, items, _ = shape(value, limit)
        return 12 * chars + 4 * items
    if name == "urlize":
        n = weight(value, limit)
        extra = sum(len(str(arg(i, key) or "")) for i, key in ((2, "target"), (3, "rel")))
        return 3 * n + (n // 4 + 1) * (64 + extra)
    if name == "wordwrap":
        n = weight(value, limit)
        wrap = arg(3, "wrapstring")
        return n + (n + 1) * (len(wrap) if isinstance(wrap, str) else 1)
    if name in ("upper", "lower", "title", "capitalize"):
        return len(value) if isinstance(value, str) and value.isascii() else 3 * weight(value, limit)
    if name == "batch":
        size = _int_arg(arg(0, "linecount", 1)) if arg(1, "fill_with") is not None else 0
        return size + (len(value) if hasattr(value, "__len__") else 0)
    if name == "slice":
        return 2 * max(_int_arg(arg(0, "slices", 1)), 0) + (len(value) if hasattr(value, "__len__") else 0)
    if name == "sum":
        start = arg(1, "start", 0)
        if isinstance(value, (list, tuple)) and (isinstance(start, (list, tuple)) or
                                                 any(isinstance(x, (list, tuple)) for x in value)):
            return (len(start) if isinstance(start, (list, tuple)) else 0) + sum(
                len(x) for x in value if isinstance(x, (list, tuple, str)))
        return None
    return None


# Filters that hand back a part of their input (or a number): nothing new to count.
_NOT_GROWING = frozenset({"first", "last", "default", "d", "attr", "length", "count", "random", "min", "max",
                          "safe", "abs", "int", "float", "round", "wordcount", "filesizeformat", "trim",
                          "select", "reject", "selectattr", "rejectattr", "map", "items", "batch", "slice",
                          "truncate", "striptags"})
_MATERIALIZED = frozenset({"join", "batch", "slice", "sum"})  # sized from a list: a generator input is made one


def guard_filter(name: str, func: Callable, current: Callable[[], Any], default_limit: int) -> Callable:
    """``func`` wrapped: sized before it runs, its result checked and counted after. Keeps Jinja's
    ``pass_context``/``pass_eval_context``/``pass_environment`` marker, so Jinja passes the same first argument."""
    from jinja2.utils import _PassArg

    skip = 0 if _PassArg.from_obj(func) is None else 1

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        deadline = current()
        limit = deadline.max_chars if deadline is not None else default_limit
        if deadline is not None:
            deadline.check()
        if len(args) > skip:
            value = args[skip]
            if name in _MATERIALIZED and not isinstance(value, (list, tuple, str, Mapping)) \
                    and hasattr(value, "__iter__"):
                value = list(value)
                args = args[:skip] + (value,) + args[skip + 1:]
            size = _filter_size(name, value, args[skip + 1:], kwargs, limit)
            if size is not None and size > limit:
                raise refuse(f"a value (|{name})", size, limit)
        result = func(*args, **kwargs)
        if deadline is not None:
            deadline.check_size(result)
            if name not in _NOT_GROWING and (len(args) <= skip or result is not args[skip]):
                deadline.spend(cost(result), f"|{name}")
        return result

    return guarded


# --- installing ---------------------------------------------------------------------------------------------------

def install(env: Any, current: Callable[[], Any], default_limit: int) -> None:
    """Guard a fresh Jinja environment before it compiles anything: its filters (Jinja folds constant filter calls
    while compiling, so a guard installed later would come too late), ``finalize`` (printed values), ``concat``
    (block output) and the operators. ``current()`` returns the budget of the render running in this thread (an
    object with ``max_chars``, ``check()``, ``check_size(value)`` and ``spend(nbytes, what)``), or None."""

    def limit_now() -> tuple[Any, int]:
        deadline = current()
        return deadline, (deadline.max_chars if deadline is not None else default_limit)

    for name, func in list(env.filters.items()):
        env.filters[name] = guard_filter(name, func, current, default_limit)

    original_binop = env.call_binop

    def call_binop(context, operator, left, right):
        deadline, limit = limit_now()
        check_binop(operator, left, right, limit)
        result = original_binop(context, operator, left, right)
        if deadline is not None and operator in ("+", "*", "%"):
            deadline.spend(cost(result, items=False), operator)
        return result

    original_wrap = env.wrap_str_format

    def wrap_str_format(value):
        """``str.format``/``format_map`` as the sandbox hands them out (its own wrapper), sized first."""
        wrapped = original_wrap(value)
        if wrapped is None:
            return None
        fmt, name = value.__self__, value.__name__

        def guarded(*args, **kwargs):
            deadline, limit = limit_now()
            if name == "format_map":
                mapping = args[0] if args and isinstance(args[0], Mapping) else {}
                size = format_size(fmt, (), dict(mapping), limit)
            else:
                size = format_size(fmt, args, kwargs, limit)
            if size > limit:
                raise refuse(f"a string ({name})", size, limit)
            result = wrapped(*args, **kwargs)
            if deadline is not None:
                deadline.spend(cost(result), name)
            return result

        return guarded

    def finalize(value):
        if type(value) is str:
            return value
        deadline, limit = limit_now()
        size = weight(value, limit)
        if size > limit:
            raise refuse(f"a printed {type(value).__name__}", size, limit)
        if deadline is not None and size > 1024:
            deadline.spend(size, "printing")
        return value

    def concat(parts):
        if not isinstance(parts, list):
            parts = list(parts)
        deadline, limit = limit_now()
        size = sum(map(len, parts))
        if size > limit:
            raise refuse("a block of output", size, limit)
        text = "".join(parts)
        if deadline is not None and size > 1024:
            deadline.spend(cost(text), "a block")
        return text

    # The environment is immutable for templates, not for us.
    object.__setattr__(env, "intercepted_binops", frozenset({"*", "**", "+", "%", "//"}))
    object.__setattr__(env, "call_binop", call_binop)
    object.__setattr__(env, "wrap_str_format", wrap_str_format)
    object.__setattr__(env, "finalize", finalize)
    object.__setattr__(env, "concat", concat)


def install_joins(compiled: Any, current: Callable[[], Any], default_limit: int) -> None:
    """Guard ``~`` in a compiled template: Jinja compiles it to ``str_join``/``markup_join``, module globals of the
    template's code (shared by its blocks and macros)."""
    from jinja2 import runtime

    namespace = compiled.root_render_func.__globals__

    def wrap(join: Callable) -> Callable:
        def guarded(parts):
            parts = tuple(parts)
            deadline = current()
            limit = deadline.max_chars if deadline is not None else default_limit
            size = sum(weight(p, limit) for p in parts)
            if size > limit:
                raise refuse("a string (~)", size, limit)
            result = join(parts)
            if deadline is not None and size > 1024:
                deadline.spend(cost(result), "~")
            return result

        return guarded

    namespace["str_join"] = wrap(runtime.str_join)
    namespace["markup_join"] = wrap(runtime.markup_join)
