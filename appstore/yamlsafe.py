"""YAML loading for user-supplied text: compose templates, seed files, imported catalogs.

PyYAML's `safe_load` builds no objects of arbitrary classes, but it still accepts three kinds of
input that cost far more than their size:

- alias bombs ("billion laughs"): a few lines of anchors and aliases that stand for billions of
  nodes. PyYAML shares the aliased objects, so loading itself is cheap, but every later walk
  (interpolation, validation, `json.dumps`) visits the expanded tree and runs out of memory;
- deep nesting (`[[[[...]]]]`): PyYAML's composer recurses once per level and dies with a
  RecursionError, or worse, exhausts the C stack;
- sheer size.

`load` refuses all three before any Python object is built. The size check is a length test.
The other checks run over PyYAML's event stream, which needs memory in proportion to the nesting
depth only: each collection counts the nodes it would expand to, each anchor remembers its
count, and each alias adds the count of its anchor. A document is refused as soon as the running
total, the number of aliases or the depth passes its limit, so a bomb is refused after reading
its first few lines' worth of events.

The depth limit must not depend on the PyYAML in use. libyaml's scanner reads ahead through every
`[` that might start a key, and since PyYAML 6.0.4 (which bundles a newer libyaml) it refuses
nesting past 1,000 levels with its own error, before the first event reaches the count. So when
libyaml refuses a document, it is scanned again by PyYAML's pure-Python scanner, whose scanner
counts the depth as it opens each collection and stops at `max_depth`. Only refused documents pay
for that slower second scan (0.4 s at most for a 1 MiB document with its error at the end); what
libyaml accepts is never scanned twice.

Duplicate mapping keys are refused as Compose refuses them, and timestamps stay strings (Compose
has no dates, and JSON cannot carry them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from .errors import YamlError

try:  # libyaml when present: scanning and emitting are then many times faster
    _BaseLoader = yaml.CSafeLoader  # type: ignore[attr-defined]
    _BaseDumper = yaml.CSafeDumper  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader
    _BaseDumper = yaml.SafeDumper


@dataclass(frozen=True)
class Limits:
    """Bounds for one document. The defaults fit any real compose file with a wide margin."""

    max_bytes: int = 1 << 20
    # After alias expansion. Big real compose files have a few thousand nodes; every later step
    # (interpolation, validation, dumping) walks the expanded tree, so this bounds their CPU too.
    max_nodes: int = 20_000
    max_aliases: int = 1_000
    max_depth: int = 64


DEFAULT_LIMITS = Limits()


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that refuses duplicate keys and keeps timestamps as strings."""


def _construct_mapping(loader, node, deep=False):
    if not isinstance(node, yaml.MappingNode):  # `!!map x`: SafeLoader would unpack the scalar's text
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a mapping node, but found {node.id}", node.start_mark)
    loader.flatten_mapping(node)  # resolves `<<` merge keys first, as SafeLoader does
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hashable = key not in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark) from None
        if not hashable:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_mapping_obj(loader, node):
    data: dict = {}
    yield data
    data.update(_construct_mapping(loader, node))


def _fitting(construct, what: str):
    """SafeLoader's constructor for a scalar tag, raising a YAML error for text that does not fit it.

    SafeLoader raises ValueError, KeyError or IndexError for `!!int 'x'`, `!!bool 'maybe'`,
    `!!float '.'` or an integer of more than 4,300 digits, which are no YAML errors.
    """
    def run(loader, node):
        try:
            return construct(loader, node)
        except (ValueError, KeyError, IndexError):
            raise yaml.constructor.ConstructorError(
                None, None, f"{str(node.value)[:40]!r} is not {what}", node.start_mark) from None
    return run


def _refuse(loader, node):
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag!r} is not allowed: a compose file holds plain data", node.start_mark)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping_obj)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
_Loader.add_constructor("tag:yaml.org,2002:int", _fitting(yaml.SafeLoader.construct_yaml_int, "an integer"))
_Loader.add_constructor("tag:yaml.org,2002:float", _fitting(yaml.SafeLoader.construct_yaml_float, "a number"))
_Loader.add_constructor("tag:yaml.org,2002:bool", _fitting(yaml.SafeLoader.construct_yaml_bool, "a boolean"))
# A set, bytes and lists of pairs (tuples) are not the plain data `load` promises: JSON cannot
# carry them, and code that walks the document would meet types it does not expect.
for _tag in ("set", "binary", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)


def _mark(event) -> str:
    mark = getattr(event, "start_mark", None)
    return _mark_of(mark) if mark is not None else "unknown position"


def check(text: str, limits: Limits = DEFAULT_LIMITS) -> int:
    """Scan `text` without building it; return its expanded node count or raise YamlError."""
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise YamlError(f"the document is larger than {limits.max_bytes} bytes")
    try:
        return _count(yaml.parse(text, Loader=_Loader), limits)
    except yaml.YAMLError as exc:
        refused = exc
    # libyaml refused it, maybe for a depth of its own: the depth-checking scanner says why.
    try:
        _count(_depth_checked_events(text, limits.max_depth), limits)
    except yaml.YAMLError:
        pass
    raise YamlError(f"invalid YAML: {refused}") from None


def _count(events, limits: Limits) -> int:
    """The expanded node count of an event stream, refused past `limits` (see the module docstring)."""
    # One counter per open collection; anchors map to the expanded size of their node.
    stack: list[int] = []
    anchors: dict[str, int | None] = {}  # None while the anchored collection is still open
    open_anchors: list[str | None] = []
    total = aliases = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise YamlError(f"more than {limits.max_aliases} aliases ({_mark(event)})")
            size = anchors.get(event.anchor, 0)
            if size is None:
                raise YamlError(f"alias *{event.anchor} refers to a node that contains it ({_mark(event)})")
            total += size
            if stack:
                stack[-1] += size
        elif isinstance(event, (yaml.ScalarEvent,)):
            total += 1
            if stack:
                stack[-1] += 1
            if event.anchor:
                anchors[event.anchor] = 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            total += 1
            stack.append(1)
            open_anchors.append(event.anchor)
            if event.anchor:
                anchors[event.anchor] = None
            if len(stack) > limits.max_depth:
                raise _too_deep(limits.max_depth, _mark(event))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            size = stack.pop()
            anchor = open_anchors.pop()
            if anchor:
                anchors[anchor] = size
            if stack:
                stack[-1] += size
        elif isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()  # anchors do not cross documents
        if total > limits.max_nodes:
            raise YamlError(f"the document expands to more than {limits.max_nodes} nodes "
                            f"(aliases that multiply content are refused)")
    return total


def _too_deep(max_depth: int, where: str) -> YamlError:
    return YamlError(f"nested deeper than {max_depth} levels ({where})")


class _DepthCheckedLoader(yaml.SafeLoader):
    """PyYAML's pure-Python scanner and parser, refusing nesting past `max_depth` as the scanner
    opens each collection, so it never reads ahead into deeper levels. The scanner's depth (flow
    levels plus block indentation levels) is never more than the event stream's: a document
    within the limit is never refused here."""

    max_depth = DEFAULT_LIMITS.max_depth

    def fetch_flow_collection_start(self, TokenClass):
        self._check_depth(1)
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column):
        if self.flow_level == 0 and self.indent < column:
            self._check_depth(1)
        return super().add_indent(column)

    def _check_depth(self, opening: int) -> None:
        if self.flow_level + len(self.indents) + opening > self.max_depth:
            raise _too_deep(self.max_depth, _mark_of(self.get_mark()))


def _mark_of(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _depth_checked_events(text: str, max_depth: int):
    loader = _DepthCheckedLoader(text)
    loader.max_depth = max_depth
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def load(text: str | bytes, limits: Limits = DEFAULT_LIMITS):
    """Load one YAML document from user-supplied text, within `limits`.

    Returns plain Python data (dict, list, str, int, float, bool, None); an empty document is
    None. Raises YamlError for malformed, oversized, too deep or alias-bombed input, or for a
    stream of more than one document.
    """
    if isinstance(text, bytes):
        if len(text) > limits.max_bytes:
            raise YamlError(f"the document is larger than {limits.max_bytes} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlError(f"the document is not UTF-8: {exc}") from None
    check(text, limits)
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}") from None
    except RecursionError:  # unreachable within max_depth, kept as a last line of defence
        raise YamlError("the document is nested too deeply") from None
    if len(documents) > 1:
        raise YamlError("expected one YAML document, found several (separated by ---)")
    return documents[0] if documents else None


def dump(data) -> str:
    """YAML text for plain data, keys in the order given (no sorting), block style, UTF-8 kept."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=1 << 16)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """SafeDumper that never writes anchors: output is read by tools that may not expand them."""

    def ignore_aliases(self, data):
        return True


# Plain scalars that YAML 1.2's core schema (go-yaml v3, which docker compose uses) reads as
# something other than a string. PyYAML quotes by YAML 1.1's rules, which miss some of them
# (`1e5`, `0o17`): such a password would reach the container as a number.
_YAML12_NON_STRING = re.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|true|True|TRUE|false|False|FALSE|null|Null|NULL|~|)$")


def _str_representer(dumper, value: str):
    # Multi-line strings (scripts, certificates) stay readable as literal blocks.
    if "\n" in value and not value.endswith((" ", "\t")):
        style = "|"
    elif _YAML12_NON_STRING.match(value):
        style = "'"
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)
