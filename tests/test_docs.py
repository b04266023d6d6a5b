"""The README stays a short front door whose CI commands run every test, and the
links between the README and the pages in docs/ lead somewhere."""

import re
import subprocess

import pytest

from tests.conftest import ROOT

PAGES = [
    ROOT / "README.md",
    ROOT / "config" / "README.md",
    ROOT / "profiles" / "slurm" / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def ci_block(marker: str) -> str:
    """The command .ci/run reads after ``<!-- ci:<marker> -->``, by its own awk."""
    script = (ROOT / ".ci" / "run").read_text()
    function = script[script.index("block_after()") : script.index("install=")]
    result = subprocess.run(
        ["bash", "-c", f"{function}\nblock_after {marker}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_readme_is_a_short_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_ci_installs_as_the_quickstart_and_runs_every_test():
    assert ci_block("install").startswith("python3 -m venv .venv")
    # -m "" replaces the fast-only selection of addopts: every marker runs in CI
    test = ci_block("test")
    assert test.startswith('.venv/bin/python -m pytest -m ""')
    assert " -m " not in test.split('-m ""', 1)[1]  # no other selection after it


def anchors(page) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"
