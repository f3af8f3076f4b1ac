"""The documentation holds together: every relative link resolves, the README stays a front door."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def documents() -> list[Path]:
    top = [REPO / name for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md")]
    return [p for p in top if p.exists()] + sorted((REPO / "docs").rglob("*.md")) + [REPO / "benchmarks/README.md"]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (resolved.is_dir() or anchor not in anchors(resolved)):
            broken.append(f"{target} (no such heading)")
    return broken


def test_slug_and_link_checks(tmp_path: Path) -> None:
    assert slug("The demo") == "the-demo"
    assert slug("Results on real EM: the gala FIB-SEM crops") == "results-on-real-em-the-gala-fib-sem-crops"
    (tmp_path / "b.md").write_text("# A heading\n")
    doc = tmp_path / "a.md"
    doc.write_text(
        "[ok](b.md) [anchor](b.md#a-heading) [web](https://x.org/y) [self](#top)\n"
        "# Top\n[gone](c.md) [bad](b.md#nothing)\n```\n[in code](d.md)\n```\n"
    )
    assert broken_links(doc) == ["c.md (no such file)", "b.md#nothing (no such heading)"]


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def reachable(start: Path) -> set[Path]:
    """The Markdown files reached from ``start`` by following relative links."""
    seen, todo = set(), [start.resolve()]
    while todo:
        doc = todo.pop()
        if doc in seen:
            continue
        seen.add(doc)
        for target in relative_links(doc):
            linked = (doc.parent / target.partition("#")[0]).resolve()
            if linked.is_dir():  # a folder's README.md is its page
                linked = linked / "README.md"
            if linked.suffix == ".md" and linked.is_file():
                todo.append(linked)
    return seen


def test_reachable_follows_links(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("[b](b.md)\n")
    (tmp_path / "b.md").write_text("[a](a.md#x) [c](sub/c.md) [sub](sub/)\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/c.md").write_text("no links\n")
    (tmp_path / "sub/README.md").write_text("index\n")
    (tmp_path / "d.md").write_text("[a](a.md)\n")
    assert reachable(tmp_path / "a.md") == {
        (tmp_path / n).resolve() for n in ("a.md", "b.md", "sub/c.md", "sub/README.md")
    }


def test_readme_is_a_front_door() -> None:
    """At most 160 lines, and every document can be reached from it."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    found = reachable(REPO / "README.md")
    unreached = [str(doc.relative_to(REPO)) for doc in documents() if doc.resolve() not in found]
    assert unreached == []


def test_readme_carries_the_ci_test_command() -> None:
    ci = (REPO / ".ci/run").read_text().splitlines()
    command = ci[ci.index(next(line for line in ci if "README test command" in line)) + 1]
    assert command in (REPO / "README.md").read_text().splitlines()
