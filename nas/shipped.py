"""Where the shipped DSL documents are: spaces ``spaces/<name>.yaml`` and reference architectures
``spaces/<space>/<name>.yaml``, found by name without parsing them (so the families can name
reference architectures without importing :class:`~nas.dsl.arch.Arch`).

In a source checkout (or an editable install) the folder is the repository's ``spaces/``; in a wheel
it is shipped as ``nas/_spaces``. :mod:`nas.registry` loads them as spaces and architectures.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from nas.errors import DSLError

__all__ = ["spaces_dir", "space_names", "arch_names", "resolve_arch_path", "looks_like_path"]

_DOC_SUFFIXES = (".yaml", ".yml", ".json")


def spaces_dir() -> Path:
    """The folder holding the shipped space and reference-architecture documents."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_spaces", package.parent / "spaces"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no spaces/ folder next to {package}; is the package installed correctly?")


def space_names() -> list[str]:
    """Names of the shipped spaces, sorted."""
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


@lru_cache(maxsize=None)
def _arch_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(spaces_dir().glob("*/*.yaml")):
        index[path.stem] = path
    return index


def arch_names(space: str | None = None) -> list[str]:
    """Names of the shipped reference architectures (of one space, if given)."""
    return [n for n, p in _arch_index().items() if space is None or p.parent.name == space]


def looks_like_path(ref: str) -> bool:
    """Whether a reference is a document path rather than a name."""
    return ref.endswith(_DOC_SUFFIXES) or "/" in ref or "\\" in ref


def resolve_arch_path(ref: str | Path) -> Path:
    """The document path of a reference-architecture name, or ``ref`` itself if it is a path."""
    if isinstance(ref, Path) or looks_like_path(ref):
        return Path(ref)
    try:
        return _arch_index()[ref]
    except KeyError:
        raise DSLError("arch", ref, "a reference architecture (" + ", ".join(arch_names()) + ") or a document path",
                       reason="unknown architecture") from None
