"""Progress output: a live bar on a terminal, one summary line in logs, errors never swallowed."""

import io

import pytest

from cifake.progress import progress

pytestmark = pytest.mark.code


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_one_summary_line_with_count_and_rate():
    log = io.StringIO()
    with progress("decode", total=3, stream=log) as bar:
        for _ in range(3):
            bar.update(unreadable=0)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("decode: 3 images in ") and "image/s, unreadable 0)" in lines[0]


def test_quiet_step_writes_nothing_to_a_log():
    log = io.StringIO()
    with progress("epoch 1/2", total=10, summary=False, stream=log) as bar:
        bar.update(10)
    assert log.getvalue() == ""


def test_terminal_gets_a_live_bar_with_counts():
    tty = Terminal()
    with progress("predict", unit="image", stream=tty, summary=False) as bar:
        bar.update(256, skipped=1)
        bar.bar.refresh()
    out = tty.getvalue()
    assert "predict" in out and "256" in out and "skipped=1" in out


def test_errors_pass_through_and_the_summary_is_still_written():
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt), progress("extract", total=5, unit="file", stream=log) as bar:
        bar.update(2)
        raise KeyboardInterrupt
    assert log.getvalue().startswith("extract: 2 files in ")
    with pytest.raises(RuntimeError), progress("quiet", summary=False, stream=log):
        raise RuntimeError("boom")


def test_a_long_step_tells_a_log_how_far_it_is():
    """A step of hours (an attack on 20 000 images) must not be silent in a log until it ends."""
    log = io.StringIO()
    with progress("pgd eps=4/255 x10", total=512, summary=False, stream=log, every=0.0) as bar:
        bar.update(256)
        bar.update(256)
    lines = log.getvalue().splitlines()
    assert [line.split(" after ")[0] for line in lines] == [
        "pgd eps=4/255 x10: 256 of 512 images",
        "pgd eps=4/255 x10: 512 of 512 images",
    ]
    assert all(line.endswith("image/s)") for line in lines)
    quiet = io.StringIO()
    with progress("short", total=2, summary=False, stream=quiet) as bar:  # the default: every 10 minutes
        bar.update(2)
    assert quiet.getvalue() == ""
