"""Loading spaces and architectures by name or path (where the shipped documents are:
:mod:`nas.shipped`, whose names this module re-exports).
"""
from __future__ import annotations

from pathlib import Path

from nas.dsl.arch import Arch
from nas.dsl.space import Space
from nas.errors import DSLError
from nas.shipped import arch_names, looks_like_path, resolve_arch_path, space_names, spaces_dir

__all__ = ["spaces_dir", "space_names", "arch_names", "load_space", "load_arch", "resolve_arch_path"]


def load_space(ref: str | Path) -> Space:
    """Load a space by name (``x3d``, ``movinet``) or from a document path."""
    if isinstance(ref, Path) or looks_like_path(ref):
        return Space.load(ref)
    path = spaces_dir() / f"{ref}.yaml"
    if not path.is_file():
        raise DSLError("space", ref, "a space name (" + ", ".join(space_names()) + ") or a document path",
                       reason="unknown space")
    return Space.load(path)


def load_arch(ref: str | Path) -> Arch:
    """Load a frozen architecture by reference name (``x3d-m``) or from a document path."""
    return Arch.load(resolve_arch_path(ref))
