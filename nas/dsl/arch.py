"""Frozen architectures: a document of a family with no choice left."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.dsl.document import dump_json, dump_yaml, read_document, read_text
from nas.errors import DSLError

if TYPE_CHECKING:
    from nas.cost import Clip, Cost

__all__ = ["Arch"]

# Header fields that name or describe a document but do not change the network it builds.
_META_KEYS = ("name", "description", "kind", "space")


class Arch:
    """A frozen architecture: a validated document (plain dicts/lists/scalars) with no choices.

    Build one with :meth:`load`, :meth:`from_yaml`, :meth:`from_json`, :meth:`from_dict`, or
    :meth:`nas.dsl.space.Space.freeze`. The document is treated as immutable: methods that change
    something (:meth:`renamed`) return a new architecture; :meth:`cost` takes another clip length
    or crop without changing the document.
    """

    def __init__(self, doc: dict[str, Any], *, file: str | None = None) -> None:
        """Wrap an already-validated document. Use the ``from_*`` constructors for raw input."""
        self.doc = doc
        self.file = file

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, *, file: str | None = None) -> "Arch":
        """Validate plain data (as read from YAML/JSON) and return the architecture."""
        from nas.families import parse

        doc, _ = parse(raw, allow_choices=False, file=file)
        if doc["kind"] != "architecture":
            raise DSLError("kind", doc["kind"], "'architecture' for a frozen architecture", file=file)
        return cls(doc, file=file)

    @classmethod
    def from_yaml(cls, text: str, *, file: str | None = None) -> "Arch":
        """Parse a YAML (or JSON) document."""
        return cls.from_dict(read_text(text, file), file=file)

    from_json = from_yaml  # JSON is YAML; same validation, same errors

    @classmethod
    def load(cls, path: str | Path) -> "Arch":
        """Read an architecture document from a ``.yaml`` / ``.yml`` / ``.json`` file."""
        return cls.from_dict(read_document(path), file=str(path))

    # -- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The architecture's name (``x3d-m``, or ``<space>-<hash>`` for sampled ones)."""
        return self.doc["name"]

    @property
    def family(self) -> str:
        """The family whose schema the document follows."""
        return self.doc["family"]

    @property
    def space(self) -> str | None:
        """The space this architecture declares itself a point of, if any."""
        return self.doc.get("space")

    def content(self) -> dict[str, Any]:
        """The document without the fields that only name or describe it."""
        return {k: v for k, v in self.doc.items() if k not in _META_KEYS}

    @property
    def hash(self) -> str:
        """Stable content hash (16 hex digits): same network description, same hash.

        Computed from canonical JSON (sorted keys, exact float repr) of :meth:`content`, so it does
        not depend on key order, the file format, the name or the description.
        """
        canon = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.content() == other.content()

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"Arch({self.name!r}, family={self.family!r}, hash={self.hash})"

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the document as plain data."""
        return json.loads(dump_json(self.doc))

    def to_yaml(self) -> str:
        """The document as YAML."""
        return dump_yaml(self.doc)

    def to_json(self, indent: int | None = 2) -> str:
        """The document as JSON."""
        return dump_json(self.doc, indent)

    def save(self, path: str | Path) -> Path:
        """Write to ``path``: JSON if it ends in ``.json``, YAML otherwise."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() if path.suffix == ".json" else self.to_yaml())
        return path

    # -- derived ------------------------------------------------------------------------------
    def renamed(self, name: str, description: str | None = None) -> "Arch":
        """The same architecture under another name."""
        doc = self.to_dict()
        doc["name"] = name
        if description is not None:
            doc["description"] = description
        return Arch.from_dict(doc)

    def with_classes(self, classes: int) -> "Arch":
        """The same architecture with ``classes`` outputs (a dataset's class count); itself if equal.

        Raises:
            DSLError: ``classes`` outside what the family allows (the message names the field).
        """
        if self.doc["classes"] == classes:
            return self
        return Arch.from_dict({**self.to_dict(), "classes": classes})

    @property
    def clip(self) -> "Clip":
        """The input clip (frames, frame stride, crop) the architecture is defined at."""
        from nas.families import family_of

        return family_of(self.family).clip(self.doc)

    def cost(self, frames: int | None = None, size: int | None = None) -> "Cost":
        """Exact analytic cost (multiply-adds and params); see :func:`nas.families.count_cost`."""
        from nas.families import count_cost

        return count_cost(self, frames=frames, size=size)

