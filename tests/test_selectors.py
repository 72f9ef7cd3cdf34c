"""Kubernetes label selectors: parsing, matching, canonical form and every error."""

from __future__ import annotations

import pytest

from sentinel.errors import InvalidArgument
from sentinel.selectors import (
    Operator,
    Requirement,
    Selector,
    parse_label_assignment,
    parse_selector,
    validate_label,
)

NODE = {"zone": "eu-1", "gpu": "h100", "tier": "", "example.com/pool": "train"}
NAME_RULE = "use letters, digits, '-', '_' or '.', and start and end with a letter or digit"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("", NODE, True),
        ("   ", NODE, True),
        ("zone=eu-1", NODE, True),
        ("zone==eu-1", NODE, True),
        ("zone=us-1", NODE, False),
        ("zone=eu-1", {}, False),
        ("zone!=us-1", NODE, True),
        ("zone!=eu-1", NODE, False),
        ("zone!=eu-1", {}, True),  # != matches when the key is absent
        ("gpu in (h100,h200)", NODE, True),
        ("gpu in (a100)", NODE, False),
        ("gpu in (h100)", {}, False),
        ("gpu notin (a100,v100)", NODE, True),
        ("gpu notin (h100)", NODE, False),
        ("gpu notin (h100)", {}, True),  # notin matches when the key is absent
        ("gpu", NODE, True),
        ("gpu", {}, False),
        ("!gpu", NODE, False),
        ("!draining", NODE, True),
        ("tier", NODE, True),  # an empty value still exists
        ("tier=", NODE, True),
        ("tier=", {}, False),
        ("tier in ()", NODE, True),  # as Kubernetes: () means ("")
        ("tier in (a,)", NODE, True),
        ("example.com/pool=train", NODE, True),
        ("zone=eu-1,gpu in (h100),!draining", NODE, True),
        ("zone=eu-1,gpu=a100", NODE, False),  # comma is AND
        (" zone = eu-1 ,\tgpu in( h100 , h200 ) , ! draining ", NODE, True),
        ("x=in", {"x": "in"}, True),  # keywords are plain text where a value is expected
        ("x in (in,notin)", {"x": "notin"}, True),
    ],
)
def test_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("zone==eu-1", "zone=eu-1"),
        ("zone != eu-1", "zone!=eu-1"),
        ("gpu in ( h200 , h100, h100 )", "gpu in (h100,h200)"),
        ("gpu notin(b,a)", "gpu notin (a,b)"),
        ("b, !a ,a", "!a,a,b"),
        ("zone=eu-1,zone=eu-1", "zone=eu-1"),
        ("tier=", "tier="),
        ("tier in ()", "tier in ()"),
        ("tier in (a,)", "tier in (,a)"),
    ],
)
def test_canonical_form_parses_back(text: str, canonical: str) -> None:
    selector = parse_selector(text)
    assert str(selector) == canonical
    assert parse_selector(canonical) == selector


def test_selectors_are_values() -> None:
    assert parse_selector("a=1,b") == parse_selector("b , a==1")
    assert hash(parse_selector("a=1,b")) == hash(parse_selector("b,a=1"))
    assert Selector() == parse_selector("")
    assert Selector().matches({"anything": "at-all"})
    assert parse_selector("x in (b,a)").requirements == (Requirement("x", Operator.IN, ("a", "b")),)


def _selector_error(text: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_selector(text)
    assert caught.value.reason == "INVALID_SELECTOR"
    assert caught.value.details == {"selector": text}
    return caught.value


OPERATORS = '"=", "==", "!=", "in", "notin", "," or end of selector'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # where a requirement starts
        (",a", 'unexpected "," at position 0, expected a label key or "!"'),
        ("=a", 'unexpected "=" at position 0, expected a label key or "!"'),
        ("!=a", 'unexpected "!=" at position 0, expected a label key or "!"'),
        ("in=x", 'unexpected "in" at position 0, expected a label key or "!"'),
        ("a,", 'expected a label key after ","'),
        ("!", 'expected a label key after "!"'),
        ("!!a", 'unexpected "!" at position 1, expected a label key'),
        ("!notin", 'unexpected "notin" at position 1, expected a label key'),
        # after a key
        ("a b", f'unexpected "b" at position 2, expected {OPERATORS}'),
        ("a!b", f'unexpected "!" at position 1, expected {OPERATORS}'),
        ("a (b)", f'unexpected "(" at position 2, expected {OPERATORS}'),
        # set operators
        ("zone in", 'expected "("'),
        ("zone in a", 'unexpected "a" at position 8, expected "("'),
        ("zone in (a", 'expected ")"'),
        ("zone in (a,", 'expected ")"'),
        ("zone in (a b)", 'unexpected "b" at position 11, expected "," or ")"'),
        ("zone in (a=b)", 'unexpected "=" at position 10, expected "," or ")"'),
        ("zone in (,=)", 'unexpected "=" at position 10, expected a label value'),
        # values
        ("a=(b)", 'unexpected "(" at position 2, expected a label value'),
        ("a==!", 'unexpected "!" at position 3, expected a label value'),
        # after a requirement
        ("a=b=c", 'unexpected "=" at position 3, expected "," or end of selector'),
        ("a=b c", 'unexpected "c" at position 4, expected "," or end of selector'),
        ("!a=b", 'unexpected "=" at position 2, expected "," or end of selector'),
        ("a in (b))", 'unexpected ")" at position 8, expected "," or end of selector'),
        # keys and values Kubernetes refuses
        ("-a=b", f'invalid label key "-a" at position 0: the name must {NAME_RULE}'),
        ("a>5", f'invalid label key "a>5" at position 0: the name must {NAME_RULE}'),
        (
            "x,a/b/c",
            "invalid label key \"a/b/c\" at position 2: at most one '/' is allowed (prefix/name)",
        ),
        ("/a", "invalid label key \"/a\" at position 0: the prefix before '/' must not be empty"),
        ("a/", 'invalid label key "a/" at position 0: the name must not be empty'),
        (
            "Ex.com/a",
            'invalid label key "Ex.com/a" at position 0: '
            "the prefix must be a DNS subdomain of at most 253 characters",
        ),
        ("a=-x", f'invalid label value "-x" at position 2: must be empty or {NAME_RULE}'),
        ("a in (ok, b_)", f'invalid label value "b_" at position 10: must be empty or {NAME_RULE}'),
    ],
)
def test_errors_name_the_token_and_position(text: str, problem: str) -> None:
    assert str(_selector_error(text)) == f'invalid label selector "{text}": {problem}'


def test_a_64_character_value_is_refused() -> None:
    value = "v" * 64
    error = _selector_error(f"gpu={value}")
    assert str(error) == (
        f'invalid label selector "gpu={value}": '
        f'invalid label value "{value}" at position 4: must be at most 63 characters'
    )
    assert parse_selector(f"gpu={value[:63]}").matches({"gpu": value[:63]})


def test_key_length_limits() -> None:
    name, prefix = "n" * 63, ".".join(["p" * 63] * 4)[:253]
    assert parse_selector(f"{prefix}/{name}").matches({f"{prefix}/{name}": ""})
    assert str(_selector_error(f"{name}n")).endswith(
        "at position 0: the name must be at most 63 characters"
    )
    assert str(_selector_error(f"{prefix}p/{name}")).endswith(
        "at position 0: the prefix must be a DNS subdomain of at most 253 characters"
    )


@pytest.mark.parametrize(
    ("key", "operator", "values", "problem"),
    [
        ("a", Operator.EQUALS, (), "operator '=' cannot take 0 value(s)"),
        ("a", Operator.NOT_EQUALS, ("x", "y"), "operator '!=' cannot take 2 value(s)"),
        ("a", Operator.IN, (), "operator 'in' cannot take 0 value(s)"),
        ("a", Operator.EXISTS, ("x",), "operator 'exists' cannot take 1 value(s)"),
        ("a", Operator.DOES_NOT_EXIST, ("x",), "operator '!' cannot take 1 value(s)"),
        ("a b", Operator.EXISTS, (), f'invalid label key "a b": the name must {NAME_RULE}'),
        (
            "a",
            Operator.IN,
            ("ok", "-"),
            f'invalid label value "-" for key "a": must be empty or {NAME_RULE}',
        ),
    ],
)
def test_requirements_built_in_code_are_validated(
    key: str, operator: Operator, values: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Requirement(key, operator, values)
    assert caught.value.reason == "INVALID_SELECTOR"
    assert str(caught.value) == f"invalid label selector requirement: {problem}"


def test_requirement_values_are_sorted_and_unique() -> None:
    requirement = Requirement("gpu", Operator.NOT_IN, ("b", "a", "b"))
    assert requirement.values == ("a", "b")
    assert str(requirement) == "gpu notin (a,b)"


@pytest.mark.parametrize(
    ("key", "value"),
    [("zone", "eu-1"), ("example.com/pool", "train"), ("a", ""), ("A_b.c", "Z9"), ("k", "v" * 63)],
)
def test_validate_label_accepts(key: str, value: str) -> None:
    validate_label(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("", "v", 'invalid label key "": the name must not be empty'),
        ("a b", "v", f'invalid label key "a b": the name must {NAME_RULE}'),
        (
            "k",
            "v" * 64,
            f'invalid label value "{"v" * 64}" for key "k": must be at most 63 characters',
        ),
        ("k", "a b", f'invalid label value "a b" for key "k": must be empty or {NAME_RULE}'),
    ],
)
def test_validate_label_refuses(key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_label(key, value)
    assert caught.value.reason == "INVALID_LABEL"
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("zone=eu-1", ("zone", "eu-1")), ("tier=", ("tier", "")), ("a.io/b=c", ("a.io/b", "c"))],
)
def test_parse_label_assignment(text: str, expected: tuple[str, str]) -> None:
    assert parse_label_assignment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone", 'invalid label "zone": expected key=value'),
        ("", 'invalid label "": expected key=value'),
        ("=eu-1", 'invalid label key "": the name must not be empty'),
        ("k=v=w", f'invalid label value "v=w" for key "k": must be empty or {NAME_RULE}'),
        ("zone = eu", f'invalid label key "zone ": the name must {NAME_RULE}'),
    ],
)
def test_parse_label_assignment_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_label_assignment(text)
    assert caught.value.reason == "INVALID_LABEL"
    assert str(caught.value) == message
