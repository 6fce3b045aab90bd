"""Progress for long steps: a live tqdm bar on a terminal, one summary line otherwise.

Every long step (extraction, decoding, training epochs, attacks, predict) goes
through :func:`progress`, so a user at a terminal sees counts and rates while it
runs and a log file (DVC, CI, ``nohup``) gets a single line per step when it ends::

    extract: 120,000 files in 41.2 s (2,913 files/s)

A step that runs longer than ``REPORT_EVERY`` seconds also tells a log how far it is, every
``REPORT_EVERY`` seconds (an attack on 20 000 images can run for hours)::

    pgd eps=4/255 x10: 8,448 of 20,000 images after 3,960 s (2.1 image/s)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

REPORT_EVERY = 600.0  # seconds between "how far" lines in a log


class Progress:
    """Counts done work; see :func:`progress`."""

    def __init__(self, bar: tqdm, what: tuple[str, int | None, str] = ("", None, ""), stream=None, every=REPORT_EVERY):
        self.bar = bar
        self.done = 0
        self.postfix: dict[str, object] = {}
        self.what, self.stream, self.every = what, stream, every  # (desc, total, unit) for the "how far" lines
        self.start = self.reported = time.perf_counter()

    def update(self, n: int = 1, **postfix: object) -> None:
        """Add ``n`` done items; ``postfix`` values (e.g. ``skipped=3``) are shown beside the bar."""
        self.done += n
        self.bar.update(n)
        if self.bar.disable and self.stream is not None and time.perf_counter() - self.reported >= self.every:
            self._report()
        if postfix:
            self.postfix.update(postfix)
            if not self.bar.disable:  # formatting costs ~5 us a call; a log only needs the final values
                self.bar.set_postfix(self.postfix, refresh=False)

    def _report(self) -> None:
        """One line for a log: how much of the step is done, and how fast."""
        self.reported = time.perf_counter()
        (desc, total, unit), seconds = self.what, self.reported - self.start
        rate, of = self.done / max(seconds, 1e-9), f" of {total:,}" if total else ""
        print(
            f"{desc}: {self.done:,}{of} {unit}s after {seconds:,.0f} s ({rate:,.1f} {unit}/s)",
            file=self.stream,
            flush=True,
        )


@contextmanager
def progress(
    desc: str,
    total: int | None = None,
    unit: str = "image",
    *,
    summary: bool = True,
    stream=None,
    every: float = REPORT_EVERY,
) -> Iterator[Progress]:
    """A progress bar for one step; on exit, one summary line with the count and the rate.

    The bar is drawn only when ``stream`` (default stderr) is a terminal; otherwise a line says how far
    the step is every ``every`` seconds. The summary line is written whenever ``summary`` is true (also
    when the step fails part-way); callers that print their own summary pass ``summary=False``.
    """
    stream = stream or sys.stderr
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=False,
        dynamic_ncols=True,
        mininterval=0.5,
        file=stream,
        disable=not _is_terminal(stream),
        leave=False,
    )
    tracker = Progress(bar, (desc, total, unit), stream, every)
    try:
        yield tracker
    finally:
        bar.close()
        if summary:
            seconds = time.perf_counter() - tracker.start
            extra = "".join(f", {k} {v}" for k, v in tracker.postfix.items())
            print(
                f"{desc}: {tracker.done:,} {unit}{'' if tracker.done == 1 else 's'} in {seconds:.1f} s "
                f"({tracker.done / max(seconds, 1e-9):,.0f} {unit}/s{extra})",
                file=stream,
                flush=True,
            )


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
