"""Fuzzing the loader: random mutations of valid documents either load or raise DSLError, nothing else."""
from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas import DSLError, arch_names, load_arch, load_space, space_names
from nas.dsl import Arch, Space
from nas.dsl.document import dump_yaml

DOCS = [load_arch(n).to_dict() for n in arch_names()] + [
    __import__("yaml").safe_load(load_space(n).to_yaml()) for n in space_names()
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["1x3x3", "3x3x3", "4x4x4", "0x1x1", "x3d", "movinet", "space", "architecture"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["choice", "range", "step", "label", "log", "repeat", "each", "width", "x"]),
                        inner, max_size=3),
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["replace", "delete", "add", "wrap_choice", "duplicate"]))
        if not path:
            if op == "replace":
                doc = data.draw(values)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = data.draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=6))] = data.draw(values)
        elif op == "wrap_choice":
            parent[key] = {"choice": [parent[key], data.draw(values)]}
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


def _load_all_ways(raw: Any) -> None:
    for loader in (Space.from_dict, Arch.from_dict):
        try:
            loaded = loader(raw, file="fuzz.yaml")
        except DSLError:
            continue
        if isinstance(loaded, Arch):
            loaded.cost()  # a valid architecture always has a cost
            loaded.hash
        else:
            loaded.dims()
            loaded.size()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.sampled_from(DOCS), data=st.data())
def test_mutated_documents_raise_only_dsl_error(doc: dict, data: st.DataObject) -> None:
    _load_all_ways(_mutate(doc, data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.sampled_from(DOCS), data=st.data())
def test_mutated_text_raises_only_dsl_error(doc: dict, data: st.DataObject) -> None:
    text = dump_yaml(doc)
    pos = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 20))
    junk = data.draw(st.sampled_from(["", ":", "- ", "{", "]", "\t", "&a", "*a", "!!python/object ", "\n  x: 1", "'"]))
    mutated = text[:pos] + junk + text[pos + cut:]
    for loader in (Space.from_yaml, Arch.from_yaml):
        try:
            loader(mutated, file="fuzz.yaml")
        except DSLError:
            pass
