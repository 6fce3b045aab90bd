"""Classify every image under a folder, streaming, and write the results CSV.

The CSV has exactly the columns ``Image Name`` (path relative to the input
folder, with ``/``) and ``Predicted Label`` (``Real`` or ``Fake``), one row per
readable image, sorted by name. Files that cannot be classified are reported
on stderr and in ``<output>.errors.csv`` (``Image Name``, ``Error``). Both files
are written whole or not at all. Memory stays bounded: images are decoded and
classified one batch at a time.
"""

from __future__ import annotations

import csv
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifake.errors import CifakeError
from cifake.fileio import atomic_path, write_csv
from cifake.generalisation import ood_note
from cifake.images import LABEL_NAMES, LABEL_OF_CLASS, ImageError, load_image, much_larger
from cifake.metrics import label_metrics
from cifake.progress import progress

log = logging.getLogger(__name__)

CSV_COLUMNS = ("Image Name", "Predicted Label")
SCORE_COLUMN = "P(Fake)"


class PredictError(CifakeError, RuntimeError):
    """Prediction cannot start (missing input folder, unwritable output, ...)."""


@dataclass
class PredictSummary:
    output: Path
    errors_file: Path
    classified: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    downscaled: int = 0  # images much larger than 32x32 (see images.MUCH_LARGER)
    limits: str = field(default_factory=lambda: ood_note(None))  # the model's measured figures: set by the caller
    path: str = ""  # how the network ran, e.g. "bfloat16 (auto: this CPU has avx512_bf16)" (set by the caller)

    def describe(self) -> str:
        rate = self.classified / self.seconds if self.seconds else 0.0
        text = f"classified {self.classified} images in {self.seconds:.1f} s ({rate:.0f} img/s) -> {self.output}"
        if self.path:
            text += f"\ncomputed in {self.path}"
        if self.failed:
            text += f"; {len(self.failed)} skipped, listed in {self.errors_file}"
        if self.downscaled:
            text += f"\nnote: {self.downscaled} images were downscaled from much larger than 32x32; {self.limits}"
        return text


def errors_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".errors.csv")


def iter_files(
    root: Path, skip: Callable[[Path], bool] = lambda path: False
) -> Iterator[tuple[str, Path | None, str | None]]:
    """Yield ``(name, path, problem)`` for every file under ``root``, sorted by name.

    Symlinks are resolved and must stay inside ``root``; a link pointing out of it
    (or dangling) is yielded with a problem instead of a path. Symlinked folders
    are not descended into. Files for which ``skip(path)`` is true are not yielded.
    """
    root_real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                yield ((base / d).relative_to(root).as_posix(), None, "symlinked folder not followed")
        for name in sorted(filenames):
            path = base / name
            if skip(path):
                continue
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root_real):
                    yield rel, None, "symlink points outside the input folder; not followed"
                    continue
                if not target.is_file():
                    yield rel, None, "symlink target is missing or not a file"
                    continue
            yield rel, path, None


def own_files(*outputs: Path) -> Callable[[Path], bool]:
    """True for this run's outputs and their temporary files, should they lie inside the input folder."""
    folders = {o.resolve().parent for o in outputs}
    names = tuple(o.name for o in outputs)
    return lambda path: (
        path.parent.resolve() in folders
        and (path.name in names or path.name.startswith(tuple(f".{n}." for n in names)))
    )


def _batches(
    root: Path, batch_size: int, failed: list, skip: Callable[[Path], bool], large: list | None = None
) -> Iterator[tuple[list[str], np.ndarray]]:
    names, pixels = [], []
    for rel, path, problem in iter_files(root, skip):
        if path is not None and problem is None:
            try:
                pixels.append(load_image(path))
                names.append(rel)
                if large is not None and much_larger(path):
                    large.append(rel)
            except ImageError as exc:
                problem = str(exc)
        if problem is not None:
            failed.append((rel, problem))
            print(f"skipped: {rel}: {problem}", file=sys.stderr)
        if len(names) == batch_size:
            yield names, np.stack(pixels)
            names, pixels = [], []
    if names:
        yield names, np.stack(pixels)


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Yield from ``items``, produced ahead by a background thread, at most ``depth`` waiting.

    Decoding (Pillow releases the GIL) then overlaps inference, and memory stays
    bounded by ``depth`` batches. An exception in the producer is re-raised here;
    when the consumer stops early, the producer stops at its next item.
    """
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)
        else:
            slots.put(done)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


def check_output(output: Path) -> None:
    """Fail before any work if ``output`` cannot be written (its folder missing or read-only)."""
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise PredictError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PredictError(f"output folder is not writable: {folder}")


def predict_folder(
    model,
    input_dir: str | Path,
    output: str | Path,
    *,
    threshold: float = 0.5,
    batch_size: int = 256,
    scores: bool = False,
) -> PredictSummary:
    """Classify every image under ``input_dir``; write the CSV and its errors file.

    With ``scores`` a third column ``P(Fake)`` holds the model's probability, so that
    users can choose their own threshold; the first two columns stay as they are.
    """
    from cifake.inference import label_name
    from cifake.model import predict_proba

    root, output = Path(input_dir), Path(output)
    if not root.is_dir():
        raise PredictError(f"input folder does not exist or is not a folder: {root}")
    check_output(output)
    summary = PredictSummary(output=output, errors_file=errors_path(output))
    start = time.perf_counter()
    large: list[str] = []

    def rows() -> Iterator[tuple[str, str, float]]:
        skip = own_files(output, summary.errors_file)
        # the folder is streamed, not listed first: the bar counts without a total
        with progress("predict", summary=False) as bar:  # the caller prints summary.describe()
            for names, pixels in prefetch(_batches(root, batch_size, summary.failed, skip, large)):
                p_fake = predict_proba(model, pixels, batch_size)
                yield from ((name, label_name(p, threshold), p) for name, p in zip(names, p_fake, strict=True))
                summary.classified += len(names)
                bar.update(len(names), skipped=len(summary.failed))

    write_results(output, rows(), summary.failed, scores)
    summary.seconds = time.perf_counter() - start
    summary.downscaled = len(large)
    if summary.classified == 0 and not summary.failed:
        log.warning("no files found under %s", root)
    return summary


def write_results(
    output: Path, rows: Iterable[tuple[str, str, float]], failed: list[tuple[str, str]], scores: bool = False
) -> None:
    """Write ``rows`` (name, label, P(Fake)) as the results CSV, then ``failed`` (name, why) as its errors file.

    Both are written whole or not at all, the CSV only once the errors file is; ``failed`` may grow while
    ``rows`` is consumed. With ``scores`` the CSV has a third column, P(Fake).
    """
    with atomic_path(output) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS + ((SCORE_COLUMN,) if scores else ()))
            for name, label, p in rows:
                writer.writerow([name, label] + ([f"{p:.6f}"] if scores else []))
        write_csv(errors_path(output), ["Image Name", "Error"], failed)


def walk_order(name: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a relative name (``a/b/c.jpg``) that orders names as :func:`iter_files` yields them: a
    folder's files by name, then each of its subfolders by name."""
    *folders, file = name.split("/")
    return (*((1, folder) for folder in folders), (0, file))


def read_labels(path: str | Path) -> dict[str, int]:
    """Read a labels CSV (``Image Name``, ``Label`` = Real/Fake) into name -> 0/1."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["Image Name"]: LABEL_NAMES.index(r["Label"]) for r in rows}


def folder_labels(predictions: str | Path) -> dict[str, int]:
    """Labels taken from the first folder of each name (``REAL/...``, ``FAKE/...``), as in CIFAKE's layout."""
    with open(predictions, newline="", encoding="utf-8") as fh:
        names = [r["Image Name"] for r in csv.DictReader(fh)]
    truth = {}
    for name in names:
        top = name.split("/", 1)[0].upper()
        if top in LABEL_OF_CLASS and "/" in name:
            truth[name] = LABEL_OF_CLASS[top]
    if not truth:
        raise PredictError("no image lies under a REAL/ or FAKE/ folder: nothing to score")
    return truth


def score_csv(predictions: str | Path, truth: dict[str, int]) -> dict:
    """Score a results CSV against ``name -> label``; images missing from the results count as wrong."""
    with open(predictions, newline="", encoding="utf-8") as fh:
        predicted = {r["Image Name"]: LABEL_NAMES.index(r["Predicted Label"]) for r in csv.DictReader(fh)}
    names = sorted(truth)
    y_true = np.array([truth[n] for n in names])
    y_pred = np.array([predicted.get(n, 1 - truth[n]) for n in names])
    scores = label_metrics(y_true, y_pred)
    scores["missing_predictions"] = sum(1 for n in names if n not in predicted)
    return scores
