"""The search-space DSL: documents, choices, spaces and frozen architectures (no torch here)."""
from nas.dsl.arch import Arch
from nas.dsl.choice import Choice, Repeat
from nas.dsl.space import Space

__all__ = ["Arch", "Choice", "Repeat", "Space"]
