"""Trained weights on disk: one format for ``xnas train`` checkpoints, the expansion's inherited
weights and bare ``state_dict`` files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.dsl.arch import Arch
from nas.files import atomic_path

__all__ = ["read_weights", "write_weights"]


def read_weights(path: str | Path) -> dict[str, Any]:
    """The ``state_dict`` in ``path``: an ``xnas train`` checkpoint (its ``model``), a file written by
    :func:`write_weights`, or a bare state dict. Raises ``FileNotFoundError`` if there is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {str(path)!r}")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    return blob.get("model", blob) if isinstance(blob, dict) else blob


def write_weights(path: str | Path, arch: Arch, model: nn.Module) -> Path:
    """Write ``model``'s weights (CPU tensors) with the architecture they belong to, atomically (a crash
    mid-write never leaves a truncated file that a resumed run would read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format) if v.dim() == 5 else v.detach().cpu()
             for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"arch": arch.to_dict(), "model": state}, tmp)
    return path
