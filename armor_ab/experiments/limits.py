"""Limits on what an experiment spec may hold, checked where a spec comes in.

``LIMITS`` is the one table of them: the models (``experiments/models.py``) and the body check
below take their numbers from it, and ``docs/security.md`` ("Limits") documents it
(``tests/test_validation_limits.py`` checks that the two agree).

The body check (``check_spec_body``) runs on the parsed JSON or YAML before the models see it, and
is iterative: a body nested thousands deep, an integer of thousands of digits (``int()`` refuses
over 4,300) or a non-finite number is refused naming the field, never with a ``RecursionError``
or a ``ValueError`` out of the parser (a 500).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

# -- the numbers ----------------------------------------------------------------------------------
MAX_DEPTH = 16  # mappings and lists nested in one spec body (the spec itself is level 1)
MAX_VALUES = 10_000  # values (scalars, mappings, lists) in one spec body
MAX_STRING_CHARS = 10_000  # any string of a spec body, mapping keys included
MAX_INT_DIGITS = 18  # an integer below 10**18 fits DuckDB's BIGINT and numpy's int64
MIN_VARIANTS = 2
MAX_VARIANTS = 20
MAX_SEGMENTS = 8  # segments an experiment adds to the report's defaults (device, category)
MAX_SEGMENT_CHARS = 64
SEGMENT_PATTERN = r"^[A-Za-z0-9_.-]+$"  # a segment is a key of the exposure's properties
MAX_NAME_CHARS = 200  # the experiment's name
MAX_TEXT_CHARS = 5_000  # hypothesis, a variant's content prompt
MAX_LABEL_CHARS = 200  # owner, hash_seed, a variant's name, a content model's name


@dataclass(frozen=True)
class Limit:
    """One row of the limits table: its value, what it bounds and how a request over it is refused."""

    value: int | str
    what: str
    status: int
    code: str


LIMITS: dict[str, Limit] = {
    "spec_depth": Limit(MAX_DEPTH, "nesting of mappings and lists in a spec body", 422, "limit_exceeded"),
    "spec_values": Limit(MAX_VALUES, "values in a spec body", 422, "limit_exceeded"),
    "spec_string_chars": Limit(MAX_STRING_CHARS, "characters of any string in a spec body", 422, "limit_exceeded"),
    "integer_digits": Limit(MAX_INT_DIGITS, "digits of an integer in a spec body", 422, "limit_exceeded"),
    "non_finite_numbers": Limit("refused", "NaN and infinities in any number of a spec", 422, "validation_error"),
    "variants": Limit(MAX_VARIANTS, "variants of an experiment (at least 2)", 422, "validation_error"),
    "segments": Limit(MAX_SEGMENTS, "segments of an experiment", 422, "validation_error"),
    "segment_chars": Limit(MAX_SEGMENT_CHARS, "characters of a segment name (at least 1)", 422, "validation_error"),
    "segment_pattern": Limit(SEGMENT_PATTERN, "characters a segment name may use", 422, "validation_error"),
    "name_chars": Limit(MAX_NAME_CHARS, "characters of an experiment's name (at least 1)", 422, "validation_error"),
    "text_chars": Limit(MAX_TEXT_CHARS, "characters of the hypothesis and of a content prompt", 422,
                        "validation_error"),
    "label_chars": Limit(MAX_LABEL_CHARS, "characters of owner, hash_seed, a variant's name, a content model",
                         422, "validation_error"),
}


# -- the body check -------------------------------------------------------------------------------
class SpecLimitError(ValueError):
    """A spec body over a limit; ``field`` is the dotted path of the value at fault (None: the body)."""

    def __init__(self, path: tuple, message: str, code: str = "limit_exceeded") -> None:
        self.field = field_path(path)
        self.message = message
        self.code = code
        super().__init__(f"{self.field}: {message}" if self.field else message)


class Refused:
    """What a parser hands over instead of a value it must not build (a huge integer, ``NaN``);
    ``check_spec_body`` refuses it naming its field."""

    __slots__ = ("code", "message")

    def __init__(self, message: str, code: str = "limit_exceeded") -> None:
        self.message, self.code = message, code

    def __repr__(self) -> str:
        return f"Refused({self.message!r})"


def field_path(path: tuple) -> str | None:
    """``("variants", 0, "weight")`` -> ``variants[0].weight``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def too_many_digits(text: str) -> bool:
    """Whether an integer's literal text is surely over ``MAX_INT_DIGITS`` (sign, underscores, a prefix aside)."""
    return len(text) > MAX_INT_DIGITS + 22


def too_deep(path: tuple) -> SpecLimitError:
    return SpecLimitError(path, f"mappings and lists nest at most {MAX_DEPTH} levels deep")


def check_spec_body(data: Any) -> None:
    """Refuse, naming the field, a parsed body over the limits or holding a non-finite number.

    Iterative (a stack, no recursion), in document order, and bounded by ``MAX_VALUES``: YAML
    aliases can make a small text a huge tree; this stops at the first value over the limit.
    """
    int_bound = 10**MAX_INT_DIGITS
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]  # value, its path, containers above it
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise too_deep(path)
            seen += len(value)
            if seen > MAX_VALUES:
                raise SpecLimitError(path, f"a spec holds at most {MAX_VALUES} values")
            if isinstance(value, dict):
                for key in value:
                    if isinstance(key, Refused):  # a YAML key can be a number too
                        raise SpecLimitError(path, key.message, key.code)
                    if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
                        raise SpecLimitError(path, f"a key is over {MAX_STRING_CHARS} characters")
                children = [(v, (*path, k), depth + 1) for k, v in value.items()]
            else:
                children = [(v, (*path, i), depth + 1) for i, v in enumerate(value)]
            stack.extend(reversed(children))
        elif isinstance(value, Refused):
            raise SpecLimitError(path, value.message, value.code)
        elif isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                raise SpecLimitError(path, f"a string has at most {MAX_STRING_CHARS} characters, got {len(value)}")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -int_bound < value < int_bound:
                raise SpecLimitError(path, f"an integer has at most {MAX_INT_DIGITS} digits")
        elif isinstance(value, float) and not math.isfinite(value):
            raise SpecLimitError(path, f"{value} is not a finite number", "validation_error")


# -- JSON -----------------------------------------------------------------------------------------
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.S)


def _json_key(token: str | None) -> str:
    try:
        return json.loads(token) if token else "?"
    except ValueError:
        return token.strip('"') if token else "?"


def check_json_depth(text: str) -> None:
    """Refuse JSON text nested over ``MAX_DEPTH`` before ``json.loads`` recurses into it.

    A scan of the brackets outside strings (one regex, no recursion); the error names the path of
    the first container too deep. Text that is not JSON passes, for the parser to name its error.
    """
    stack: list[list] = []  # per open container: [is a mapping, the key or index being read]
    last_string: str | None = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        c = token[0]
        if c == '"':
            last_string = token
        elif c == ":":
            if stack and stack[-1][0]:
                stack[-1][1] = _json_key(last_string)
        elif c == ",":
            if stack and not stack[-1][0]:
                stack[-1][1] += 1
        elif c in "[{":
            if len(stack) >= MAX_DEPTH:
                raise too_deep(tuple("?" if f[1] is None else f[1] for f in stack))
            stack.append([c == "{", None if c == "{" else 0])
        elif stack:
            stack.pop()


def _json_int(text: str) -> int | Refused:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return Refused(f"an integer has at most {MAX_INT_DIGITS} digits, got {digits}")
    return int(text)


def _json_float(text: str) -> float | Refused:
    value = float(text)
    return value if math.isfinite(value) else Refused(f"{text} is out of range: numbers must be finite",
                                                      "validation_error")


def _json_constant(text: str) -> Refused:
    return Refused(f"{text} is not a JSON number: numbers must be finite", "validation_error")


JSON_HOOKS = {"parse_int": _json_int, "parse_float": _json_float, "parse_constant": _json_constant}
"""Keyword arguments of ``json.loads`` that hand ``check_spec_body`` what it must refuse."""
