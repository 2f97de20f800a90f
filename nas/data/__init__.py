"""Data for proxy training (numpy only; no torch import).

:class:`SyntheticVideo` is the embedded default dataset; :func:`render_clip` renders one clip and
:func:`contact_sheet` writes a PNG to look at a task. See :mod:`nas.data.synthetic` for the task
design and its invariants. Real videos: :func:`nas.data.layouts.discover` indexes a folder, Kinetics
CSV, UCF101 lists, Something-Something v2 JSON or a list file, and :class:`nas.data.video.VideoClips`
samples X3D-style clips from them with PyAV (imported on use, not here).
"""
from nas.data.synthetic import (
    EVENT_FRAMES,
    MIN_SEGMENT,
    ORDERLESS_CEILING,
    SOURCE_FPS,
    TASKS,
    SyntheticVideo,
    class_names,
    contact_sheet,
    num_classes,
    offset_range,
    render_clip,
    sample_times,
    write_png,
)

__all__ = [
    "EVENT_FRAMES", "MIN_SEGMENT", "ORDERLESS_CEILING", "SOURCE_FPS", "TASKS",
    "SyntheticVideo", "class_names", "contact_sheet", "num_classes", "offset_range",
    "render_clip", "sample_times", "write_png",
]
