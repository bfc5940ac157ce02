"""YAML as ``yaml.safe_load`` reads it, with the resources it may take bounded.

- nesting deeper than ``MAX_DEPTH`` is refused while composing (no RecursionError);
- the document is measured before it is built: aliases expanding to more than
  ``MAX_YAML_VALUES`` values ("billion laughs"), nesting deeper than ``MAX_DEPTH`` through
  aliases, or an alias inside its own anchor are refused, so nothing downstream (validation,
  error messages) ever walks an exponential value;
- integers and floats longer than ``MAX_NUMBER_CHARS`` are refused (Python refuses to convert
  integers above 4,300 digits, with a traceback);
- strings must be valid Unicode (``"\\ud800"`` is not);
- a key given twice in one mapping is a problem (YAML's own rule is last-wins, silently).

Problems that stop reading are :class:`yaml.YAMLError`s with a mark (``file:line:col``),
:class:`Refused` for alertd's own limits;
duplicate keys are returned as ``path: reason`` lines so they are listed beside the rest.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.error import MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from alertd.limits import MAX_DEPTH, MAX_NUMBER_CHARS, MAX_YAML_VALUES
from alertd.validation import short

_MERGE = "tag:yaml.org,2002:merge"


class Refused(MarkedYAMLError):
    """Well-formed YAML that alertd will not read: over a limit, or not valid text."""


class _Loader(yaml.SafeLoader):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels (alertd's limit)",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _short_number(self, node: ScalarNode) -> None:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise Refused(
                None,
                None,
                f"a number longer than {MAX_NUMBER_CHARS} characters (alertd's limit)",
                node.start_mark,
            )

    def construct_yaml_int(self, node: ScalarNode) -> int:
        self._short_number(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        self._short_number(node)
        return super().construct_yaml_float(node)

    def construct_yaml_str(self, node: ScalarNode) -> str:
        value: str = super().construct_yaml_str(node)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(
                None, None, "not valid Unicode text (a lone surrogate)", node.start_mark
            ) from None
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: Node) -> None:
    """Refuse alias bombs, deep nesting and self-containing anchors, in linear time."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_YAML_VALUES:
                raise Refused(
                    None,
                    None,
                    f"aliases expand to more than {MAX_YAML_VALUES} values (alertd's limit)",
                    node.start_mark,
                )
            if depth[key] > MAX_DEPTH:
                raise Refused(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels through aliases (alertd's limit)",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        ancestors.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in ancestors:
                raise Refused(
                    None, None, "an alias refers to a value that contains it", kid.start_mark
                )
            if id(kid) not in size:
                stack.append((kid, False))


def _scalar_key(node: Node) -> tuple[str, str] | None:
    return (node.tag, node.value) if isinstance(node, ScalarNode) else None


def _duplicates(root: Node) -> list[str]:
    """``path: key given twice`` for every mapping (each node once, at its first path)."""
    problems: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((kid, f"{path}[{i}]") for i, kid in reversed(list(enumerate(node.value))))
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            children = []
            for key_node, value_node in node.value:
                key = _scalar_key(key_node)
                if key is None or key_node.tag == _MERGE:
                    continue
                name = key_node.value if len(key_node.value) <= 60 else short(key_node.value)
                where = f"{path}.{name}" if path else name
                line = key_node.start_mark.line + 1
                if key in first:
                    problems.append(
                        f"{where}: given twice (lines {first[key]} and {line}); "
                        "remove one (YAML would keep only the last)"
                    )
                else:
                    first[key] = line
                children.append((value_node, where))
            stack.extend(reversed(children))
    return problems


def load(text: str) -> tuple[Any, list[str]]:
    """The document's data and its duplicate-key problems; :class:`yaml.YAMLError` if it
    cannot be read within the limits."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _measure(node)
        duplicates = _duplicates(node)
        return loader.construct_document(node), duplicates
    finally:
        loader.dispose()
