"""Kubernetes label selectors (`kubectl -l`) and label validation.

Grammar, as `k8s.io/apimachinery/pkg/labels` parses it (the numeric `<`/`>` aside):

    selector    := "" | requirement ("," requirement)*        (comma means AND)
    requirement := key | "!" key | key ("=" | "==" | "!=") value
                 | key ("in" | "notin") "(" value ("," value)* ")"

Whitespace around tokens is ignored; `in` and `notin` are keywords where a key is
expected, plain text where a value is. As in Kubernetes, a value may be empty
(`tier=`, `tier in (a,)`, and `tier in ()` means `tier in ("")`), and `!=` and
`notin` also match objects that lack the key.

Invariants: a `Requirement`, parsed or built, has a valid key, valid values (sorted,
unique) and as many as its operator takes. `str(selector)` is canonical (requirements
sorted and unique, `==` written `=`) and parses back to an equal selector. Errors are
`InvalidArgument`, reason `INVALID_SELECTOR` (or `INVALID_LABEL` for one label), and
name the token at fault and its position (0-based).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sentinel.errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_CHARS = "use letters, digits, '-', '_' or '.', and start and end with a letter or digit"
# Operators and punctuation first; an identifier is any run of other non-blank characters.
_TOKEN = re.compile(r"[ \t\r\n]*(==|!=|[=!(),]|[^ \t\r\n=!(),]+)?")
_END = "end of selector"
_IDENT = "<identifier>"  # in an `allowed` set: any token but punctuation and keywords
_PUNCTUATION = {"=", "==", "!=", "!", "(", ")", ","}
_OPERATORS = f'"=", "==", "!=", "in", "notin", "," or {_END}'


class Operator(enum.StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_ONE_VALUE = (Operator.EQUALS, Operator.NOT_EQUALS)
_SOME_VALUES = (Operator.IN, Operator.NOT_IN)


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        op, count = self.operator, len(set(self.values))
        fits = count == 1 if op in _ONE_VALUE else count >= 1 if op in _SOME_VALUES else count == 0
        arity = None if fits else f"operator {op.value!r} cannot take {count} value(s)"
        problem = _label_problem(self.key, *self.values) or arity
        if problem is not None:
            raise InvalidArgument(
                f"invalid label selector requirement: {problem}", reason="INVALID_SELECTOR"
            )
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator is Operator.EXISTS:
            return value is not None
        if self.operator is Operator.DOES_NOT_EXIST:
            return value is None
        if self.operator in (Operator.EQUALS, Operator.IN):
            return value is not None and value in self.values
        return value is None or value not in self.values  # NOT_EQUALS, NOT_IN

    def __str__(self) -> str:
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator in _ONE_VALUE:
            return f"{self.key}{self.operator.value}{self.values[0]}"
        return f"{self.key} {self.operator.value} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold (AND); no requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        canonical = sorted(set(self.requirements), key=lambda r: (r.key, str(r)))
        object.__setattr__(self, "requirements", tuple(canonical))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def parse_selector(text: str) -> Selector:
    """Parse `kubectl -l` syntax, e.g. `zone=eu-1,gpu in (h100,h200),!draining`."""
    parser = _Parser(text)
    requirements: list[Requirement] = []
    if parser.peek()[0] != _END:
        requirements.append(parser.requirement())
        while parser.take({",", _END}, f'"," or {_END}')[0] == ",":
            requirements.append(parser.requirement())
    return Selector(tuple(requirements))


def validate_label(key: str, value: str) -> None:
    """Raise `InvalidArgument` (reason `INVALID_LABEL`) unless Kubernetes would accept the label."""
    problem = _label_problem(key, value)
    if problem is not None:
        raise InvalidArgument(problem, reason="INVALID_LABEL", key=key)


def parse_label_assignment(text: str) -> tuple[str, str]:
    """Split a CLI `--label key=value` (the value may be empty) and validate both parts."""
    key, equals, value = text.partition("=")
    if not equals:
        raise InvalidArgument(
            f"invalid label {_quote(text)}: expected key=value", reason="INVALID_LABEL"
        )
    validate_label(key, value)
    return key, value


class _Parser:
    """Recursive descent over tokens `(text, position)`; `_END` closes the stream."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [(m[1], m.start(1)) for m in _TOKEN.finditer(text) if m[1]]
        self.tokens.append((_END, len(text)))
        self.index = 0

    def peek(self) -> tuple[str, int]:
        return self.tokens[self.index]

    def take(self, allowed: set[str], expected: str, at_end: str | None = None) -> tuple[str, int]:
        """Consume the next token if `allowed`, else raise naming it and what was `expected`."""
        token, position = self.peek()
        is_ident = token not in _PUNCTUATION and token not in (_END, "in", "notin")
        if token in allowed or (is_ident and _IDENT in allowed):
            self.index += 1
            return token, position
        if token == _END:
            raise self.error(f"expected {at_end or expected}")
        raise self.error(f"unexpected {_quote(token)} at position {position}, expected {expected}")

    def requirement(self) -> Requirement:
        negated = self.peek()[0] == "!"
        self.index += negated
        expected, after = ("a label key", '"!"') if negated else ('a label key or "!"', '","')
        key, position = self.take({_IDENT}, expected, at_end=f"a label key after {after}")
        self.check("key", _key_problem(key), key, position)
        if negated:
            return Requirement(key, Operator.DOES_NOT_EXIST)
        operator = self.take({"=", "==", "!=", "in", "notin", ",", _END}, _OPERATORS)[0]
        if operator in (",", _END):
            self.index -= 1  # not ours: the caller expects the separator
            return Requirement(key, Operator.EXISTS)
        if operator in ("in", "notin"):
            self.take({"("}, '"("')
            return Requirement(key, Operator(operator), self.values())
        return Requirement(key, Operator(operator.replace("==", "=")), (self.value(),))

    def values(self) -> tuple[str, ...]:
        values = [self.value()]
        while self.take({",", ")"}, '"," or ")"', at_end='")"')[0] == ",":
            values.append(self.value())
        return tuple(values)

    def value(self) -> str:
        """An identifier, or "" when the next token ends the value (as Kubernetes allows)."""
        token, position = self.peek()
        if token in (",", ")", _END):
            return ""
        value = self.take({_IDENT, "in", "notin"}, "a label value")[0]
        self.check("value", _value_problem(value), value, position)
        return value

    def check(self, what: str, problem: str | None, token: str, at: int) -> None:
        if problem is not None:
            raise self.error(f"invalid label {what} {_quote(token)} at position {at}: {problem}")

    def error(self, problem: str) -> InvalidArgument:
        return InvalidArgument(
            f"invalid label selector {_quote(self.text)}: {problem}",
            reason="INVALID_SELECTOR",
            selector=self.text,
        )


def _label_problem(key: str, *values: str) -> str | None:
    """The whole complaint about a key and its values, or None if Kubernetes takes them."""
    if (problem := _key_problem(key)) is not None:
        return f"invalid label key {_quote(key)}: {problem}"
    for value in values:
        if (problem := _value_problem(value)) is not None:
            return f"invalid label value {_quote(value)} for key {_quote(key)}: {problem}"
    return None


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    prefix_ok = not prefix or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(prefix)))
    checks = (
        (bool(slash) and not prefix, "the prefix before '/' must not be empty"),
        ("/" in prefix, "at most one '/' is allowed (prefix/name)"),
        (not prefix_ok, "the prefix must be a DNS subdomain of at most 253 characters"),
        (not name, "the name must not be empty"),
        (len(name) > 63, "the name must be at most 63 characters"),
        (not _NAME.fullmatch(name), f"the name must {_NAME_CHARS}"),
    )
    return next((problem for failed, problem in checks if failed), None)


def _value_problem(value: str) -> str | None:
    if len(value) > 63:
        return "must be at most 63 characters"
    if value and not _NAME.fullmatch(value):
        return f"must be empty or {_NAME_CHARS}"
    return None


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


__all__ = [
    "Operator",
    "Requirement",
    "Selector",
    "parse_label_assignment",
    "parse_selector",
    "validate_label",
]
