"""A one-line progress display on stderr, redrawn in place (for an interactive terminal)."""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressLine"]


class ProgressLine:
    """``label: step S/TOTAL <detail> (rate)`` on one stderr line; silent when disabled.

    Args:
        enabled: draw it (``None``: when stderr is a terminal).
        total: the number of steps.
        label: what is progressing.
    """

    def __init__(self, enabled: bool | None, total: int, label: str) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.total, self.label, self.t0 = total, label, time.perf_counter()

    def update(self, step: int, detail: str) -> None:
        """Redraw the line at ``step`` with ``detail`` (e.g. ``loss 1.234``)."""
        if self.enabled:
            seconds = max(1e-9, time.perf_counter() - self.t0)
            rate = f"{step / seconds:.1f} steps/s" if step >= seconds else f"{seconds / max(1, step):.2f} s/step"
            print(f"\r{self.label}: step {step}/{self.total} {detail} ({rate})  ", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            print(file=sys.stderr, flush=True)
