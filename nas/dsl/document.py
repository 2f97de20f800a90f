"""Documents: reading YAML/JSON text into a :class:`Space` or an :class:`Arch`, and writing them back.

Every document starts with the same header::

    xnas: 1                  # schema version
    kind: space              # or: architecture
    name: x3d                # how the registry and the CLI call it
    family: x3d              # which family schema the rest of the document follows
    space: x3d               # architectures: the space they are a point of (optional)
    description: ...         # optional

and continues with the family's fields (see ``nas/families``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nas.dsl.schema import Enum, Field, Int, ParseContext, Record, Str
from nas.errors import DSLError

__all__ = ["SCHEMA_VERSION", "read_text", "read_document", "parse_document", "header_fields", "dump_yaml", "dump_json"]

SCHEMA_VERSION = 1
NAME = Str(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", what="a name of letters, digits and _ . + -", searchable=False)
HEADER_KEYS = ("xnas", "kind", "name", "family", "space", "description")


def header_fields(families: tuple[str, ...]) -> dict[str, Field]:
    """The fields every document starts with."""
    return {
        "xnas": Field(Int(SCHEMA_VERSION, SCHEMA_VERSION, searchable=False), doc="schema version"),
        "kind": Field(Enum(("space", "architecture"), searchable=False)),
        "name": Field(NAME),
        "family": Field(Enum(families, searchable=False)),
        "space": Field(NAME, required=False),
        "description": Field(Str(searchable=False), required=False),
    }


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent overwrite would lose a field)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise DSLError("", key, "string keys", reason=f"unhashable key at line {key_node.start_mark.line + 1}")
        if key in mapping:
            raise DSLError(str(key), key, "each key once per mapping",
                           reason=f"duplicate key at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_text(text: str, file: str | None = None) -> Any:
    """Parse YAML (a superset of JSON) into plain data; syntax errors become :class:`DSLError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except DSLError as err:
        raise err.with_file(file) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "the document"
        raise DSLError("", where, "valid YAML or JSON", file=file,
                       reason=f"syntax error ({getattr(err, 'problem', None) or err})") from None
    except (ValueError, TypeError, RecursionError) as err:  # e.g. bad timestamps, deep nesting
        raise DSLError("", str(err), "valid YAML or JSON", file=file, reason="unreadable value") from None


def read_document(path: str | Path) -> Any:
    """Read and parse a YAML/JSON file; an unreadable file or bad syntax is a :class:`DSLError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DSLError("", str(path), "a readable UTF-8 file", file=str(path), reason=type(err).__name__) from None
    return read_text(text, str(path))


def parse_document(raw: Any, schema: Record, *, allow_choices: bool, file: str | None) -> tuple[dict, ParseContext]:
    """Validate plain data against ``schema``; return the parsed tree and the label table."""
    ctx = ParseContext(allow_choices=allow_choices)
    try:
        return schema.parse(raw, "", ctx), ctx
    except DSLError as err:
        raise err.with_file(file) from None
    except RecursionError:
        raise DSLError("", "<too deeply nested>", "a document of normal depth", file=file) from None


def _plain(node: Any) -> Any:
    """Turn tuples into lists so YAML/JSON writers emit plain sequences."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short scalar lists (strides, layer rows)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = len(data) <= 4 and all(not isinstance(v, (dict, list)) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_yaml(doc: dict) -> str:
    """Write a document as YAML, keys in document order (floats keep their exact repr)."""
    return yaml.dump(_plain(doc), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def dump_json(doc: dict, indent: int | None = 2) -> str:
    """Write a document as JSON, keys in document order."""
    return json.dumps(_plain(doc), indent=indent)


def file_label(path: str | Path | None) -> str | None:
    """How a file is named in error messages."""
    return None if path is None else str(path)
