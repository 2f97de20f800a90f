"""xnas: neural-architecture search for efficient video recognition networks.

The torch-free core: the search-space DSL (:class:`Space`, :class:`Arch`), the shipped spaces and
reference architectures (:func:`load_space`, :func:`load_arch`) and the exact analytic cost model
(:func:`count_cost`). Models are built by :func:`nas.models.build_model` (imports torch).
"""
from nas.cost import Clip, Cost
from nas.families import count_cost
from nas.dsl import Arch, Choice, Space
from nas.errors import DSLError
from nas.registry import arch_names, load_arch, load_space, space_names

__version__ = "0.1.0"

__all__ = [
    "Arch", "Choice", "Clip", "Cost", "DSLError", "Space",
    "arch_names", "count_cost", "load_arch", "load_space", "space_names",
]
