"""Strict YAML reading for policy bundles: every value knows its path.

A bundle is parsed with PyYAML's safe composer into nodes, and read through `Node`,
whose accessors check the type and raise `PolicyError` naming the path of the value
at fault, e.g. `rules[2].windows[0].timezone: unknown time zone 'Mars/Base'`.

Invariants:
- unknown keys, duplicate keys, missing required keys and wrong types are errors;
  nothing is silently defaulted or ignored;
- anchors and aliases work as YAML says (an alias reads as a copy, with the path where
  it is used), but a document that expands to more than `MAX_VALUES` values is refused,
  which rules out alias bombs and cycles; merge keys (`<<`) are unknown keys;
- scalars keep their source text: YAML 1.1 reads `22:00` as the number 1320 and
  `2026-01-01` as a date, but `Node.text()` returns what the author typed, so times
  and dates are parsed by this package, never by YAML's implicit resolvers.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from sentinel.errors import InvalidArgument

ROOT = "bundle"  # the path of the document itself, in messages
MAX_VALUES = 1_000_000  # scalars, lists and mappings, counted after aliases are expanded
_TAG = "tag:yaml.org,2002:"
_INT, _FLOAT, _BOOL, _NULL = (_TAG + name for name in ("int", "float", "bool", "null"))
_NOUNS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


class PolicyError(InvalidArgument):
    """A bundle that cannot be loaded; `path` names the value at fault (`rules[0].limit`)."""

    reason = "POLICY_INVALID"

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        super().__init__(f"{path}: {problem}", path=path, line=line)
        self.path = path
        self.problem = problem


class Node:
    """One YAML node and its path in the document."""

    __slots__ = ("_node", "path")

    def __init__(self, node: yaml.Node, path: str) -> None:
        self._node = node
        self.path = path

    @classmethod
    def parse(cls, source: bytes) -> Node:
        """The document's root node; YAML syntax errors and empty input are errors."""
        try:
            root = yaml.compose(source, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = None if mark is None else mark.line + 1
            where = "" if mark is None else f" at line {line}, column {mark.column + 1}"
            raise PolicyError(ROOT, f"invalid YAML{where}: {exc.problem}", line=line) from exc
        except yaml.YAMLError as exc:  # e.g. bytes that are not UTF-8/16
            raise PolicyError(ROOT, f"invalid YAML: {str(exc).splitlines()[0]}") from exc
        except RecursionError as exc:
            raise PolicyError(ROOT, "invalid YAML: nested too deeply") from exc
        if root is None:
            raise PolicyError(ROOT, "empty document")
        node = cls(root, ROOT)
        node._check_size()
        return node

    @property
    def line(self) -> int:
        return int(self._node.start_mark.line) + 1

    def error(self, problem: str) -> PolicyError:
        return PolicyError(self.path, problem, line=self.line)

    def fields(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Node]:
        """The mapping's values by key; unknown, duplicate and missing keys are errors."""
        values = self.mapping()
        for key, value in values.items():
            if key not in required and key not in optional:
                expected = ", ".join(sorted((*required, *optional)))
                raise value.error(f"unknown key {key!r} (expected one of: {expected})")
        for key in required:
            if key not in values:
                raise PolicyError(self._child_path(key), "required key is missing", line=self.line)
        return values

    def mapping(self) -> dict[str, Node]:
        """Every key and its value, in order, with no check of which keys are known."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error(f"must be a mapping, not {self._kind()}")
        values: dict[str, Node] = {}
        for key_node, value_node in self._node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise Node(key_node, self.path).error("keys must be plain scalars")
            key = str(key_node.value)
            child = Node(value_node, self._child_path(key))
            if key in values:
                raise child.error(f"duplicate key (first at line {values[key].line})")
            values[key] = child
        return values

    def sequence(self) -> list[Node]:
        if not isinstance(self._node, yaml.SequenceNode):
            raise self.error(f"must be a list, not {self._kind()}")
        return [Node(item, f"{self.path}[{i}]") for i, item in enumerate(self._node.value)]

    def text(self) -> str:
        """The scalar as typed (not null, not a mapping or list)."""
        if not isinstance(self._node, yaml.ScalarNode) or self._node.tag == _NULL:
            raise self.error(f"must be a string, not {self._kind()}")
        return str(self._node.value)

    def integer(self) -> int:
        if not isinstance(self._node, yaml.ScalarNode) or self._node.tag != _INT:
            raise self.error(f"must be an integer, not {self._kind()}")
        return int(self._construct())

    def number(self) -> float:
        """An integer or a finite decimal (an int stays an int, so that it prints as typed)."""
        if not isinstance(self._node, yaml.ScalarNode) or self._node.tag not in (_INT, _FLOAT):
            raise self.error(f"must be a number, not {self._kind()}")
        value = self._construct()
        if not math.isfinite(value):
            raise self.error("must be a finite number")
        return int(value) if self._node.tag == _INT else float(value)

    def boolean(self) -> bool:
        if not isinstance(self._node, yaml.ScalarNode) or self._node.tag != _BOOL:
            raise self.error(f"must be true or false, not {self._kind()}")
        return bool(self._construct())

    def _construct(self) -> Any:
        return yaml.constructor.SafeConstructor().construct_object(self._node)

    def _child_path(self, key: str) -> str:
        return key if self.path == ROOT else f"{self.path}.{key}"

    def _kind(self) -> str:
        node = self._node
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        tag = str(node.tag).removeprefix(_TAG)
        return "null" if tag == "null" else f"{_NOUNS.get(tag, tag)} {node.value!r}"

    def _check_size(self) -> None:
        """Refuse documents whose aliases expand beyond `MAX_VALUES` (alias bombs, cycles)."""
        count, stack = 0, [self._node]
        while stack:
            node = stack.pop()
            count += 1
            if count > MAX_VALUES:
                raise PolicyError(ROOT, f"more than {MAX_VALUES} values once aliases are expanded")
            if isinstance(node, yaml.MappingNode):
                stack.extend(part for pair in node.value for part in pair)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
