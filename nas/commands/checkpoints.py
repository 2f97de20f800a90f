"""Loading trained weights into a built model for the commands that take ``--checkpoint``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import UsageError

__all__ = ["load_checkpoint"]


def load_checkpoint(model: Any, checkpoint: str, arch_name: str) -> None:
    """Load ``checkpoint`` (an ``xnas train`` checkpoint.pt or a bare state dict) into ``model``.

    Raises:
        UsageError: naming ``--checkpoint`` when the file is missing or holds other weights.
    """
    from nas.models.weights import read_weights

    path = Path(checkpoint)
    if not path.is_file():
        raise UsageError(f"--checkpoint: got {checkpoint!r}; allowed: an existing checkpoint file")
    weights = read_weights(path)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UsageError(f"--checkpoint: got {checkpoint!r}; allowed: weights of {arch_name} "
                         f"({str(err).splitlines()[0]})") from None
