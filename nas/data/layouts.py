"""Dataset layouts: turn what users have on disk into a list of ``(video path, label)`` items.

Five layouts are understood (data.md §4); :func:`discover` recognises which one a path is:

* **folder** ``root/<class>/<video>`` (torchvision / mmaction "video folder", UCF101 and HMDB51 as
  unpacked): classes are the sorted subfolder names. If ``root/<split>/`` is itself a folder of class
  folders, it is used instead (``root/train``, ``root/val``).
* **kinetics** CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``: files named
  ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` under ``<root>/<split>/<label>/`` or flat under
  ``<root>/<split>/``; classes are the sorted labels of the CSV (train and val CSVs list the same
  classes, so their ids agree).
* **ucf101** folder holding ``ucfTrainTestlist/`` (``classInd.txt`` 1-based ids, ``trainlist0N.txt``
  ``path id`` lines, ``testlist0N.txt`` ``path`` lines whose label is the folder name).
* **ssv2** Something-Something v2: a labels JSON ``{"class name": "idx"}`` and split JSONs (lists of
  ``{"id", "template"}``); the class is the template with its square brackets removed
  (``"Holding [something]"`` -> ``"Holding something"``), the file ``<id>.webm``.
* **list** text file, one ``relative/or/absolute/path label`` per line (mmaction style), relative paths
  resolved against the list's folder; class names are the label numbers as strings.

Annotated videos whose file is missing are not errors (Kinetics loses clips to take-downs): they are
left out of :attr:`VideoIndex.items` and recorded in :attr:`VideoIndex.skipped` with the reason.
This module only touches the file system (no decoding, no torch).
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LAYOUTS", "VIDEO_EXTENSIONS", "VideoIndex", "VideoItem", "discover", "from_folder", "from_kinetics_csv",
    "from_list", "from_ssv2", "from_ucf101", "ssv2_class_name",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".mpg", ".mpeg", ".m4v", ".ogv", ".flv", ".wmv")
LAYOUTS = ("folder", "kinetics", "ucf101", "ssv2", "list")

_UNDERSTOOD = ("a folder of class folders (root/<class>/<video>), a Kinetics CSV (.csv), a UCF101 folder "
               "holding ucfTrainTestlist/, a Something-Something v2 folder or .json, or a list file "
               "(.txt/.list/.lst, one 'path label' per line)")
_UCF_LIST = re.compile(r"^(train|test)list0([1-9])\.txt$")
_SSV2_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


@dataclass(frozen=True)
class VideoItem:
    """One annotated video: its path and integer label (``-1`` when the split is unlabelled)."""

    path: Path
    label: int


@dataclass
class VideoIndex:
    """The videos of one split of a dataset, with the class names their labels index.

    Attributes:
        items: videos found on disk, in a deterministic order.
        class_names: names indexed by label.
        layout: which layout produced it (one of :data:`LAYOUTS`).
        source: the path the index was read from.
        skipped: ``(path, reason)`` of annotated videos left out (missing file, unknown class).
    """

    items: list[VideoItem]
    class_names: list[str]
    layout: str
    source: Path
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[VideoItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> VideoItem:
        return self.items[i]


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{name}: got {value!r}; allowed: {allowed}")


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    """Subfolders of ``root`` holding at least one video (at any depth), sorted by name."""
    if not root.is_dir():
        return []
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return [d for d in dirs if any(_is_video(p) for p in d.rglob("*"))]


# --------------------------------------------------------------------------------------------
# (a) folder of class folders


def from_folder(root: str | Path, split: str | None = None) -> VideoIndex:
    """Index ``root/<class>/<video>``; classes are the sorted subfolder names.

    Args:
        root: the dataset folder.
        split: if ``root/<split>/`` is itself a folder of class folders, index that instead.

    Raises:
        ValueError: ``root`` holds no class folder with a video in it.
    """
    root = Path(root)
    if split and _class_dirs(root / split):
        root = root / split
    classes = _class_dirs(root)
    if not classes:
        raise _fail("root", str(root), "a folder of class folders holding videos "
                    f"({', '.join(VIDEO_EXTENSIONS)})")
    items = [VideoItem(p, label) for label, d in enumerate(classes)
             for p in sorted(d.rglob("*")) if _is_video(p)]
    return VideoIndex(items, [d.name for d in classes], "folder", root)


# --------------------------------------------------------------------------------------------
# (b) Kinetics CSV


def from_kinetics_csv(csv_path: str | Path, root: str | Path | None = None, split: str | None = None) -> VideoIndex:
    """Index a Kinetics-400/600/700 annotation CSV.

    Each row's file is looked for, in order, at ``<root>/<split>/<label>/``, the same with the label's
    spaces as underscores, ``<root>/<split>/`` (flat CVDF tarballs), ``<root>/<label>/`` and ``<root>/``,
    where ``<split>`` is the row's split column.

    Args:
        csv_path: the CSV file (header ``label,youtube_id,time_start,time_end,split``, optional
            ``is_cc``; the test CSV may lack ``label``, its items get label ``-1``).
        root: folder holding the split folders; default the CSV's folder, or its parent when only the
            parent has the split folder (``kinetics/annotations/train.csv`` next to ``kinetics/train/``).
        split: keep only rows of this split; ``None`` keeps every row.

    Raises:
        ValueError: a required column is missing, a time is not a number, or no row has ``split``.
    """
    csv_path = Path(csv_path)
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        fields = [name.strip() for name in reader.fieldnames or []]
        # (line number, row): lines stay right after rows of other splits are dropped
        rows = [(n, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                for n, row in enumerate(reader, start=2)]
    missing = {"youtube_id", "time_start", "time_end"} - set(fields)
    if missing:
        raise _fail(f"{csv_path}: columns", fields, "a Kinetics header with label (optional), youtube_id, "
                    f"time_start, time_end, split (optional), is_cc (optional); missing {sorted(missing)}")
    labelled = "label" in fields
    class_names = sorted({row["label"] for _, row in rows}) if labelled else []
    if split is not None and "split" in fields:
        present = sorted({row["split"] for _, row in rows})
        rows = [(n, row) for n, row in rows if row["split"] == split]
        if not rows:
            raise _fail("split", split, f"a split listed in {csv_path}: {present}")

    def split_of(row: dict[str, str]) -> str:
        # without a split column the caller's split (if any) names the folder
        return row.get("split") or split or ""

    if root is None:
        first = split_of(rows[0][1]) if rows else ""
        root = csv_path.parent
        if first and not (root / first).is_dir() and (root.parent / first).is_dir():
            root = root.parent
    root = Path(root)
    label_of = {name: i for i, name in enumerate(class_names)}
    items, skipped = [], []
    for line, row in rows:
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise _fail(f"{csv_path}:{line}: time_start/time_end", (row["time_start"], row["time_end"]),
                        "numbers of seconds") from None
        name = f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4"
        label = row.get("label", "")
        where = root / split_of(row)
        candidates = [where / label / name, where / label.replace(" ", "_") / name, where / name,
                      root / label / name, root / name] if label else [where / name, root / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            skipped.append((candidates[0], "missing file"))
        else:
            items.append(VideoItem(path, label_of[label] if labelled else -1))
    return VideoIndex(items, class_names, "kinetics", csv_path, skipped)


# --------------------------------------------------------------------------------------------
# (c) UCF101 lists


def from_ucf101(root: str | Path, split: str = "train", fold: int = 1) -> VideoIndex:
    """Index one UCF101 split from ``ucfTrainTestlist/``.

    Args:
        root: the folder holding ``ucfTrainTestlist/`` (or that folder itself); videos are looked for
            under ``root/UCF-101/``, ``root/UCF101/`` or ``root/`` (first that exists).
        split: ``train`` or ``test``.
        fold: 1, 2 or 3 (``trainlist01.txt`` ... ``testlist03.txt``).

    Raises:
        ValueError: bad ``split`` / ``fold``, missing list files, or a malformed line.
    """
    root = Path(root)
    if root.name == "ucfTrainTestlist":
        root = root.parent
    lists = root / "ucfTrainTestlist"
    if split not in ("train", "test"):
        raise _fail("split", split, "'train' or 'test' (UCF101 has no separate validation split)")
    if fold not in (1, 2, 3):
        raise _fail("fold", fold, "1, 2 or 3")
    class_file, list_file = lists / "classInd.txt", lists / f"{split}list0{fold}.txt"
    for f in (class_file, list_file):
        if not f.is_file():
            raise _fail("root", str(root), f"a UCF101 folder whose ucfTrainTestlist/ holds {f.name}")
    ids: dict[int, str] = {}
    for n, text in enumerate(class_file.read_text().splitlines(), start=1):
        if text.strip():
            parts = text.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise _fail(f"{class_file}:{n}", text, "'<1-based id> <ClassName>'")
            ids[int(parts[0])] = parts[1]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise _fail(f"{class_file}: ids", sorted(ids), f"1..{len(ids)}, each once")
    class_names = [ids[i] for i in range(1, len(ids) + 1)]
    by_name = {name.lower(): i for i, name in enumerate(class_names)}  # lists spell some classes differently
    videos = next((d for d in (root / "UCF-101", root / "UCF101") if d.is_dir()), root)
    items, skipped = [], []
    for n, text in enumerate(list_file.read_text().splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        rel = parts[0]
        if len(parts) > 1:                          # trainlist: "Class/v_Class_g08_c01.avi 1"
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(class_names):
                raise _fail(f"{list_file}:{n}: class id", parts[1], f"1..{len(class_names)}")
            label = int(parts[1]) - 1
        else:                                       # testlist: the folder names the class
            label = by_name.get(rel.split("/")[0].lower(), -1)
            if label < 0:
                skipped.append((videos / rel, "class folder not in classInd.txt"))
                continue
        path = videos / rel
        if path.is_file():
            items.append(VideoItem(path, label))
        else:
            skipped.append((path, "missing file"))
    return VideoIndex(items, class_names, "ucf101", list_file, skipped)


# --------------------------------------------------------------------------------------------
# (d) Something-Something v2


def _ssv2_files(folder: Path) -> tuple[Path | None, dict[str, Path]]:
    """The labels JSON and the split JSONs (``train``/``validation``/``test``) in ``folder``."""
    labels = next(iter(sorted(folder.glob("*labels.json"))), None)
    splits = {}
    for name in set(_SSV2_SPLITS.values()):
        found = sorted(folder.glob(f"*-{name}.json")) or sorted(folder.glob(f"{name}.json"))
        if found:
            splits[name] = found[0]
    return labels, splits


def ssv2_class_name(template: str) -> str:
    """SSv2 class of a template: the template with square brackets removed (not the placeholders)."""
    return template.replace("[", "").replace("]", "")


def from_ssv2(path: str | Path, split: str = "train") -> VideoIndex:
    """Index a Something-Something v2 split.

    Args:
        path: the folder holding ``something-something-v2-labels.json`` and the split JSONs, or one of
            those JSONs (a split JSON is then used whatever ``split`` says). Videos ``<id>.webm`` are
            looked for under ``20bn-something-something-v2/``, ``videos/`` or the folder itself.
        split: ``train``, ``val`` / ``validation`` or ``test`` (ids only: labels ``-1``).

    Raises:
        ValueError: no labels JSON, no JSON for ``split``, class indices not ``0..n-1``, or an entry
            without ``id``.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    labels_file, splits = _ssv2_files(folder)
    split_file = None
    if path.is_file() and path != labels_file:
        split_file = path
    else:
        if split not in _SSV2_SPLITS:
            raise _fail("split", split, f"one of {sorted(_SSV2_SPLITS)}")
        split_file = splits.get(_SSV2_SPLITS[split])
    if labels_file is None or split_file is None:
        raise _fail("path", str(path), f"a Something-Something v2 folder with *labels.json and "
                    f"*-{_SSV2_SPLITS.get(split, split)}.json")
    mapping = json.loads(labels_file.read_text(encoding="utf-8"))
    if not isinstance(mapping, dict):
        raise _fail(str(labels_file), type(mapping).__name__, 'a JSON object {"class name": "index"}')
    index = {name: int(i) for name, i in mapping.items()}
    if sorted(index.values()) != list(range(len(index))):
        raise _fail(f"{labels_file}: indices", sorted(index.values())[:10], f"0..{len(index) - 1}, each once")
    class_names = sorted(index, key=index.__getitem__)
    entries = json.loads(split_file.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise _fail(str(split_file), type(entries).__name__, 'a JSON list of {"id": ..., "template": ...}')
    videos = next((d for d in (folder / "20bn-something-something-v2", folder / "videos") if d.is_dir()), folder)
    items, skipped = [], []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise _fail(f"{split_file}: entry {n}", entry, 'an object with an "id"')
        file = videos / f"{entry['id']}.webm"
        text = entry.get("template") or entry.get("label")
        label = -1
        if text is not None:
            label = index.get(ssv2_class_name(text), -1)
            if label < 0:
                skipped.append((file, f"class {ssv2_class_name(text)!r} not in {labels_file.name}"))
                continue
        if file.is_file():
            items.append(VideoItem(file, label))
        else:
            skipped.append((file, "missing file"))
    return VideoIndex(items, class_names, "ssv2", split_file, skipped)


# --------------------------------------------------------------------------------------------
# (e) list file


def from_list(list_path: str | Path) -> VideoIndex:
    """Index a list file of ``path label`` lines (blank lines and ``#`` comments ignored).

    Paths may contain spaces (the label is the last field); relative ones are resolved against the
    list's folder. Class names are ``"0" .. str(max label)``.

    Raises:
        ValueError: a line has no integer label >= 0.
    """
    list_path = Path(list_path)
    items, skipped = [], []
    for n, text in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise _fail(f"{list_path}:{n}", text, "'<path> <label>' with an integer label >= 0")
        path = Path(parts[0])
        path = path if path.is_absolute() else list_path.parent / path
        if path.is_file():
            items.append(VideoItem(path, int(parts[1])))
        else:
            skipped.append((path, "missing file"))
    top = max((item.label for item in items), default=-1)
    return VideoIndex(items, [str(i) for i in range(top + 1)], "list", list_path, skipped)


# --------------------------------------------------------------------------------------------
# discover


def discover(path: str | Path, split: str = "train") -> VideoIndex:
    """Recognise the layout of ``path`` and index its ``split``.

    Recognition, in order: a ``.csv`` is Kinetics; a ``.json`` is SSv2; a UCF101 list file
    (``trainlist02.txt``...) is UCF101 with that split and fold; another ``.txt``/``.list``/``.lst`` is a
    list file; a folder holding ``ucfTrainTestlist/`` is UCF101; a folder with ``*labels.json`` and split
    JSONs is SSv2; a folder of class folders (or whose ``<split>/`` is one) is the folder layout.

    Args:
        path: a dataset folder or annotation file.
        split: which split. Kinetics: the CSV's split column (``train``, ``val``, ``test``); UCF101:
            ``train`` / ``test`` with an optional fold digit (``test2``, default fold 1); SSv2: ``train``,
            ``val``, ``test``; folder: the ``<split>/`` subfolder if there is one; list: ignored.

    Raises:
        ValueError: ``path`` does not exist or fits none of the layouts (the message lists them), or the
            layout's own parser rejects it.
    """
    path = Path(path)
    if not path.exists():
        raise _fail("path", str(path), "an existing dataset folder or annotation file: " + _UNDERSTOOD)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".csv":
            return from_kinetics_csv(path, split=split)
        if suffix == ".json":
            return from_ssv2(path, split=split)
        ucf = _UCF_LIST.match(path.name)
        if ucf and (path.parent / "classInd.txt").is_file():
            return from_ucf101(path.parent, split=ucf.group(1), fold=int(ucf.group(2)))
        if path.name == "classInd.txt":
            return from_ucf101(path.parent, *_ucf_split(split))
        if suffix in (".txt", ".list", ".lst"):
            return from_list(path)
    elif path.is_dir():
        if (path / "ucfTrainTestlist" / "classInd.txt").is_file() or (path / "classInd.txt").is_file():
            return from_ucf101(path, *_ucf_split(split))
        labels, splits = _ssv2_files(path)
        if labels is not None and splits:
            return from_ssv2(path, split=split)
        if _class_dirs(path) or _class_dirs(path / split):
            return from_folder(path, split=split)
    raise _fail("path", str(path), _UNDERSTOOD)


def _ucf_split(split: str) -> tuple[str, int]:
    match = re.fullmatch(r"(train|test)([123])?", split)
    if not match:
        raise _fail("split", split, "'train' or 'test' for UCF101, optionally with a fold digit ('test2')")
    return match.group(1), int(match.group(2) or 1)
