"""The documentation holds together: every relative link resolves, and the front pages stay short."""

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, load_benchmark

pytestmark = pytest.mark.code

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def tracked_markdown() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def broken_links(path: Path) -> list[str]:
    """Relative link targets in ``path`` (outside code blocks) that name no existing file or folder."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    targets = (m.group(1) for m in LINK.finditer(text))
    relative = (t.split("#")[0] for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t))
    return [t for t in relative if t and not (path.parent / t).exists()]


def test_markdown_is_tracked():
    names = {p.relative_to(ROOT).as_posix() for p in tracked_markdown()}
    assert {"README.md", "models/pretrained/MODEL_CARD.md", "docs/experiments.md"} <= names


@pytest.mark.parametrize("path", tracked_markdown(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    links = "[ok](there.md) [web](https://x.org/a) [anchor](#top) [bad](missing.md#part)"
    page.write_text(links + "\n```\n[no](code.md)\n```")
    assert broken_links(page) == ["missing.md"]


def published_rows(text: str) -> list[tuple[str, str]]:
    """(header, row) for each body row of every table whose header starts with "published"."""
    rows: list[tuple[str, str]] = []
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table and table[0].lstrip("| ").lower().startswith("published"):
            rows += [(table[0], row) for row in table[2:]]
        table = []
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def sized(header: str, row: str) -> bool:
    """The test-set size is stated: in the header ("on the 20 000 ... test images") or in a "test images" column."""
    if re.search(r"\d[\d ]*\d (?:\w+ )?test images", header):
        return True
    return any(
        h == "test images" and re.fullmatch(r"\d[\d ,]*", c) for h, c in zip(_cells(header), _cells(row), strict=False)
    )


def unsourced(rows: list[tuple[str, str]]) -> list[str]:
    """Published rows without a web link to their source, or without the size of their test set."""
    linked = re.compile(r"\]\(https?://[^)\s]+\)")
    return [row for header, row in rows if not linked.search(row) or not sized(header, row)]


@pytest.mark.parametrize("name", ["README.md", "models/pretrained/MODEL_CARD.md"])
def test_every_published_figure_has_its_source(name):
    rows = published_rows((ROOT / name).read_text(encoding="utf-8"))
    assert rows, f"{name}: no table headed 'published'"
    assert unsourced(rows) == []


def test_the_source_check_sees_a_row_without_a_link():
    text = (
        "| published model | test images | clean | source |\n|---|---|---|---|\n"
        "| A | 20 000 | 90 % | [json](https://x.org/a.json) |\n| B | 20 000 | 91 % | a paper |\n"
        "| C | | 92 % | [doi](https://doi.org/1) |\n\n"
        "| model | clean |\n|---|---|\n| ours | 96 % |\n"
    )
    assert [_cells(row)[0] for row in unsourced(published_rows(text))] == ["B", "C"]
    sized_in_header = (
        "| published, on the 20 000 test images | clean | source |\n|---|---|---|\n| D | 93 % | [x](https://x.y) |"
    )
    assert unsourced(published_rows(sized_in_header)) == []


# the card grew a table of other generators, then both front pages the generalist file (issue 40)
@pytest.mark.parametrize(("name", "limit"), [("README.md", 12_600), ("models/pretrained/MODEL_CARD.md", 18_500)])
def test_front_pages_stay_short(name, limit):
    assert len((ROOT / name).read_text(encoding="utf-8")) <= limit


def test_generated_tables_are_current():
    """The card's and the notebook's generated blocks equal what card_tables.py makes from the metrics files."""
    for path, text in load_benchmark("card_tables").documents().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: python benchmarks/card_tables.py --write"
        )
