"""The documentation holds together: every relative link resolves, and the front pages stay short."""

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

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


@pytest.mark.parametrize(("name", "limit"), [("README.md", 12_000), ("models/pretrained/MODEL_CARD.md", 15_000)])
def test_front_pages_stay_short(name, limit):
    assert len((ROOT / name).read_text(encoding="utf-8")) <= limit


def test_generated_tables_are_current():
    """The card's and the notebook's generated blocks equal what card_tables.py makes from the metrics files."""
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("card_tables", ROOT / "benchmarks" / "card_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.documents().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: python benchmarks/card_tables.py --write"
        )
