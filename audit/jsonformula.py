"""A json-formula interpreter for the subset the C2PA Asset Rubrics use.

The C2PA Conformance Task Force writes its rubrics in json-formula (Adobe's JSON expression
language, a JMESPath descendant), and its reference evaluator needs a json-formula library
that is not on PyPI. Rather than translate each rule into Python by hand (and drift from the
published YAML), deepaudit evaluates the rubric files unmodified with this interpreter.

Supported: field access (``a.b``, quoted identifiers ``'c2pa.actions.v2'``), index ``[0]``,
projections (``[*]``, flatten ``[]``, filters ``[? cond]``) with JMESPath semantics, pipes
``|``, ``||``/``&&``/``!`` (value-returning, with json-formula's truthiness: false, null, 0,
"" and empty arrays/objects are false), comparisons, string literals ``"..."``, JSON literals
in backticks, array and object constructors, ``@``, ``$variables`` (including ``$args``),
the built-in functions the rubrics call, and the rubric's own named expressions (called as
functions: arguments become ``$args``, ``@`` stays the call site's). Anything outside that
subset is refused when the expression is compiled, naming the construct, so a newer rubric
that needs more fails loudly instead of evaluating wrongly.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FormulaError", "Program", "compile_formula", "truthy"]

Fn = Callable[[Any, "Env"], Any]


class FormulaError(ValueError):
    """An expression outside the supported subset, or a type error while evaluating."""


def truthy(v: Any) -> bool:
    """json-formula truthiness: false, null, 0, "", [] and {} are false."""
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<variable>\$[A-Za-z0-9_]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<quoted>'(?:[^'\\]|\\.)*')
  | (?P<literal>`(?:[^`\\]|\\.)*`)
  | (?P<op>\|\||&&|==|!=|<=|>=|\[\?|\[\]|[.\[\](){},:@|!<>*])
    """,
    re.VERBOSE,
)

# binding powers (JMESPath's, with json-formula's && and || ordering)
_BP = {
    "eof": 0,
    "]": 0,
    ")": 0,
    "}": 0,
    ",": 0,
    ":": 0,
    "|": 1,
    "||": 2,
    "&&": 3,
    "==": 5,
    "!=": 5,
    "<": 5,
    "<=": 5,
    ">": 5,
    ">=": 5,
    "[]": 9,
    "*": 20,
    "[?": 21,
    ".": 40,
    "!": 45,
    "{": 50,
    "[": 55,
    "(": 60,
}
_PROJECTION_STOP = 10


@dataclass(frozen=True)
class _Tok:
    kind: str  # number | variable | name | string | quoted | literal | op | eof
    value: Any
    pos: int

    @property
    def key(self) -> str:
        return self.value if self.kind == "op" else self.kind


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        kind = m.lastgroup or ""
        raw = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "number":
            out.append(_Tok(kind, float(raw) if "." in raw else int(raw), m.start()))
        elif kind == "string":
            out.append(_Tok(kind, json.loads(raw), m.start()))
        elif kind == "quoted":
            out.append(_Tok(kind, raw[1:-1].replace("\\'", "'"), m.start()))
        elif kind == "literal":
            try:
                out.append(_Tok(kind, json.loads(raw[1:-1].replace("\\`", "`")), m.start()))
            except json.JSONDecodeError as exc:
                raise FormulaError(f"bad JSON literal {raw} in {text!r}: {exc}") from None
        else:
            out.append(_Tok(kind, raw, m.start()))
    out.append(_Tok("eof", None, len(text)))
    return out


# --------------------------------------------------------------------------- evaluation env


@dataclass(slots=True)
class Env:
    """What an expression sees besides ``@``: variables, ``$args`` and named expressions."""

    variables: Mapping[str, Any]
    functions: Mapping[str, Program]
    args: list[Any] | None = None
    depth: int = 0
    # named-expression results for one document: (name, @, args) by identity → (args, value);
    # the args are kept so that no identity is reused while the cache lives
    cache: dict[tuple[Any, ...], tuple[Any, Any]] | None = None


_MAX_CALL_DEPTH = 64


def _string(v: Any, fn: str) -> str:
    if v is None:
        return ""  # json-formula coerces null to the one type a parameter accepts
    if isinstance(v, str):
        return v
    raise FormulaError(f"{fn}() expects a string, got {type(v).__name__}")


def _length(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise FormulaError(f"length() expects a string, array or object, got {type(v).__name__}")


def _contains(subject: Any, search: Any) -> bool:
    if isinstance(subject, list):
        return search in subject
    return _string(search, "contains") in _string(subject, "contains")


def _keys(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return list(v.keys())
    raise FormulaError(f"keys() expects an object, got {type(v).__name__}")


def _values(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return list(v.values())
    raise FormulaError(f"values() expects an object, got {type(v).__name__}")


def _not_null(*vals: Any) -> Any:
    return next((v for v in vals if v is not None), None)


_BUILTINS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (fn, min, max args)
    "length": (_length, 1, 1),
    "contains": (_contains, 2, 2),
    "startsWith": (
        lambda s, p: _string(s, "startsWith").startswith(_string(p, "startsWith")),
        2,
        2,
    ),
    "endsWith": (lambda s, p: _string(s, "endsWith").endswith(_string(p, "endsWith")), 2, 2),
    "keys": (_keys, 1, 1),
    "values": (_values, 1, 1),
    "split": (lambda s, sep: _string(s, "split").split(_string(sep, "split")), 2, 2),
    "notNull": (_not_null, 1, 64),
    "toString": (lambda v: v if isinstance(v, str) else json.dumps(v), 1, 1),
}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _order(op: str, a: Any, b: Any) -> bool | None:
    ta, tb = type(a), type(b)
    numbers = ta in (int, float) and tb in (int, float)  # bool is neither: not a number here
    if not numbers and not (ta is str and tb is str):
        return None
    return _COMPARE[op](a, b)


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, names: frozenset[str]) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.names = names  # named expressions the rubric defines
        self.calls: set[str] = set()

    # -- helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, key: str) -> None:
        tok = self.next()
        if tok.key != key:
            raise FormulaError(f"expected {key!r} at {tok.pos} in {self.text!r}, got {tok.value!r}")

    def parse(self) -> Fn:
        fn = self.expression(0)
        if self.peek().kind != "eof":
            tok = self.peek()
            raise FormulaError(f"unexpected {tok.value!r} at {tok.pos} in {self.text!r}")
        return fn

    def expression(self, rbp: int) -> Fn:
        left = self.nud(self.next())
        while rbp < _BP.get(self.peek().key, 0):
            left = self.led(self.next(), left)
        return left

    # -- prefix positions
    def nud(self, tok: _Tok) -> Fn:
        k = tok.key
        if tok.kind in ("string", "literal", "number"):
            value = tok.value
            return lambda v, env: value
        if tok.kind in ("name", "quoted"):
            if tok.kind == "name" and self.peek().key == "(":
                self.next()
                return self.call(tok)
            if tok.kind == "name" and tok.value in ("true", "false", "null"):
                const = {"true": True, "false": False, "null": None}[tok.value]
                return lambda v, env: const
            return _field(tok.value)
        if tok.kind == "variable":
            return _variable(tok.value)
        if k == "@":
            return lambda v, env: v
        if k == "!":
            inner = self.expression(_BP["!"])
            return lambda v, env: not truthy(inner(v, env))
        if k == "(":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if k == "[?":
            return self.filter(lambda v, env: v)
        if k == "[]":
            return self.flatten(lambda v, env: v)
        if k == "[":
            nxt = self.peek()
            if nxt.kind == "number" and self.peek(1).key == "]":
                self.i -= 1
                return self.index(lambda v, env: v)
            if nxt.key == "*" and self.peek(1).key == "]":
                self.next()
                self.next()
                return _projection(lambda v, env: v, self.projection_rhs(_BP["*"]))
            return self.array_literal()
        if k == "{":
            return self.object_literal()
        raise FormulaError(f"unsupported {tok.value!r} at {tok.pos} in {self.text!r}")

    # -- infix positions
    def led(self, tok: _Tok, left: Fn) -> Fn:
        k = tok.key
        if k == ".":
            return _then(left, self.dot_rhs(_BP["."]))
        if k == "[":
            if self.peek().key == "*":
                self.next()
                self.expect("]")
                return _projection(left, self.projection_rhs(_BP["*"]))
            self.i -= 1
            return self.index(left)
        if k == "[?":
            return self.filter(left)
        if k == "[]":
            return self.flatten(left)
        if k == "|":
            right = self.expression(_BP["|"])
            return lambda v, env: right(left(v, env), env)
        if k == "||":
            right = self.expression(_BP["||"])

            def _or(v: Any, env: Env) -> Any:
                a = left(v, env)
                return a if truthy(a) else right(v, env)

            return _or
        if k == "&&":
            right = self.expression(_BP["&&"])

            def _and(v: Any, env: Env) -> Any:
                a = left(v, env)
                return right(v, env) if truthy(a) else a

            return _and
        if k in ("==", "!="):
            right = self.expression(_BP[k])
            neg = k == "!="
            return lambda v, env: _equal(left(v, env), right(v, env)) != neg
        if k in ("<", "<=", ">", ">="):
            right = self.expression(_BP[k])
            return lambda v, env: _order(k, left(v, env), right(v, env))
        raise FormulaError(f"unsupported {tok.value!r} at {tok.pos} in {self.text!r}")

    # -- pieces
    def index(self, left: Fn) -> Fn:
        self.expect("[")
        tok = self.next()
        if tok.kind != "number" or not isinstance(tok.value, int):
            raise FormulaError(f"expected an integer index at {tok.pos} in {self.text!r}")
        self.expect("]")
        n = tok.value

        def _index(v: Any, env: Env) -> Any:
            seq = left(v, env)
            if not isinstance(seq, list):
                return None
            try:
                return seq[n]
            except IndexError:
                return None

        return _index

    def filter(self, left: Fn) -> Fn:
        cond = self.expression(0)
        self.expect("]")
        right = self.projection_rhs(_BP["[?"])

        def _filter(v: Any, env: Env) -> Any:
            seq = left(v, env)
            if not isinstance(seq, list):
                return None
            out = []
            for item in seq:
                if truthy(cond(item, env)):
                    r = right(item, env)
                    if r is not None:
                        out.append(r)
            return out

        return _filter

    def flatten(self, left: Fn) -> Fn:
        def _flat(v: Any, env: Env) -> Any:
            seq = left(v, env)
            if not isinstance(seq, list):
                return None
            out: list[Any] = []
            for item in seq:
                if isinstance(item, list):
                    out.extend(item)
                else:
                    out.append(item)
            return out

        return _projection(_flat, self.projection_rhs(_BP["[]"]))

    def projection_rhs(self, bp: int) -> Fn:
        nxt = self.peek().key
        if _BP.get(nxt, 0) < _PROJECTION_STOP:
            return lambda v, env: v
        if nxt in ("[", "[?", "[]"):
            return self._continue(bp)
        if nxt == ".":
            self.next()
            return self.dot_rhs(bp)
        tok = self.peek()
        raise FormulaError(f"unexpected {tok.value!r} after a projection in {self.text!r}")

    def _continue(self, bp: int) -> Fn:
        # the projection's right side starts with a bracket: parse it on @ and keep going
        left: Fn = lambda v, env: v  # noqa: E731
        while bp < _BP.get(self.peek().key, 0):
            left = self.led(self.next(), left)
        return left

    def dot_rhs(self, bp: int) -> Fn:
        tok = self.peek()
        if tok.kind in ("name", "quoted"):
            return self.expression(bp)
        if tok.key == "[":
            self.next()
            return self.array_literal()
        if tok.key == "{":
            self.next()
            return self.object_literal()
        if tok.key == "*":
            raise FormulaError(f"object projections (.*) are not supported: {self.text!r}")
        raise FormulaError(f"unexpected {tok.value!r} after '.' in {self.text!r}")

    def array_literal(self) -> Fn:
        items: list[Fn] = []
        if self.peek().key != "]":
            while True:
                items.append(self.expression(0))
                if self.peek().key == ",":
                    self.next()
                    continue
                break
        self.expect("]")
        return lambda v, env: [f(v, env) for f in items]

    def object_literal(self) -> Fn:
        pairs: list[tuple[str, Fn]] = []
        if self.peek().key != "}":
            while True:
                key = self.next()
                if key.kind not in ("name", "quoted", "string"):
                    raise FormulaError(f"expected an object key at {key.pos} in {self.text!r}")
                self.expect(":")
                pairs.append((str(key.value), self.expression(0)))
                if self.peek().key == ",":
                    self.next()
                    continue
                break
        self.expect("}")
        return lambda v, env: {k: f(v, env) for k, f in pairs}

    def call(self, name_tok: _Tok) -> Fn:
        name = name_tok.value
        args: list[Fn] = []
        if self.peek().key != ")":
            while True:
                args.append(self.expression(0))
                if self.peek().key == ",":
                    self.next()
                    continue
                break
        self.expect(")")
        if name in self.names:
            self.calls.add(name)

            def _named(v: Any, env: Env) -> Any:
                if env.depth > _MAX_CALL_DEPTH:
                    raise FormulaError(f"{name}() recursed deeper than {_MAX_CALL_DEPTH} calls")
                values = [a(v, env) for a in args] if args else env.args
                cache = env.cache
                key = None
                if cache is not None:
                    key = (name, id(v), *map(id, values)) if values else (name, id(v))
                    hit = cache.get(key)
                    if hit is not None:
                        return hit[1]
                inner = Env(env.variables, env.functions, values, env.depth + 1, cache)
                result = env.functions[name].fn(v, inner)
                if key is not None:
                    cache[key] = ((v, values), result)
                return result

            return _named
        if name not in _BUILTINS:
            raise FormulaError(f"function {name}() is not supported (in {self.text!r})")
        fn, lo, hi = _BUILTINS[name]
        if not lo <= len(args) <= hi:
            raise FormulaError(f"{name}() takes {lo}–{hi} arguments, got {len(args)}")
        return lambda v, env: fn(*(a(v, env) for a in args))


def _field(name: str) -> Fn:
    return _path((name,))


def _path(keys: tuple[str, ...]) -> Fn:
    """``a.b.c`` in one step (the rubrics' accessors are chains of field names)."""
    if len(keys) == 1:
        (name,) = keys

        def _get(v: Any, env: Env) -> Any:
            return v.get(name) if isinstance(v, dict) else None

    else:

        def _get(v: Any, env: Env) -> Any:
            for name in keys:
                if not isinstance(v, dict):
                    return None
                v = v.get(name)
            return v

    _get.keys = keys  # type: ignore[attr-defined]
    return _get


def _variable(name: str) -> Fn:
    if name == "$args":
        return lambda v, env: env.args

    def _var(v: Any, env: Env) -> Any:
        if name not in env.variables:
            raise FormulaError(f"unknown variable {name}")
        return env.variables[name]

    return _var


def _then(left: Fn, right: Fn) -> Fn:
    if hasattr(left, "keys") and hasattr(right, "keys"):
        return _path(left.keys + right.keys)  # type: ignore[attr-defined]

    def _sub(v: Any, env: Env) -> Any:
        value = left(v, env)
        return None if value is None else right(value, env)

    return _sub


def _projection(left: Fn, right: Fn) -> Fn:
    def _proj(v: Any, env: Env) -> Any:
        seq = left(v, env)
        if not isinstance(seq, list):
            return None
        out = []
        for item in seq:
            r = right(item, env)
            if r is not None:
                out.append(r)
        return out

    return _proj


@dataclass
class Program:
    """One compiled expression; ``calls`` are the named expressions it uses."""

    text: str
    fn: Fn
    calls: frozenset[str] = field(default_factory=frozenset)

    def __call__(
        self,
        data: Any,
        variables: Mapping[str, Any] | None = None,
        functions: Mapping[str, Program] | None = None,
        cache: dict[tuple[Any, ...], tuple[Any, Any]] | None = None,
    ) -> Any:
        """Evaluate on ``data``. ``cache``: share one dict across the statements evaluated on
        the same unchanged document, so named expressions they share are computed once."""
        return self.fn(data, Env(variables or {}, functions or {}, cache=cache))


def compile_formula(text: str, names: frozenset[str] | set[str] = frozenset()) -> Program:
    """Compile ``text``; ``names``: the named expressions it may call as functions."""
    parser = _Parser(text.strip(), frozenset(names))
    fn = parser.parse()
    return Program(text, fn, frozenset(parser.calls))
