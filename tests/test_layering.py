"""The import arrows between packages go one way (each convention lives below its users)."""

import ast
from pathlib import Path

import pytest

import pipeline_lib

PACKAGE = Path(pipeline_lib.__file__).parent

# (importing files, modules they must not import)
FORBIDDEN = [
    ("config", "pipeline_lib.inference"),
    ("config", "pipeline_lib.decoding"),
    ("report", "pipeline_lib.decoding"),
    ("report", "pipeline_lib.inference"),
    ("workflow.py", "pipeline_lib.data"),
    ("offsets.py", "pipeline_lib.inference"),
    ("io", "pipeline_lib.decoding"),
    ("io", "pipeline_lib.inference"),
]


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import``/``from … import`` of ``path`` names (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imported_modules_sees_nested_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import a.b\nfrom c import d\n\ndef f():\n    from pipeline_lib.decoding import x\n")
    assert imported_modules(source) == {"a.b", "c", "pipeline_lib.decoding"}


@pytest.mark.parametrize(("where", "forbidden"), FORBIDDEN)
def test_no_upward_import(where: str, forbidden: str) -> None:
    root = PACKAGE / where
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files
    offending = [
        f"{f.relative_to(PACKAGE)} imports {m}"
        for f in files
        for m in sorted(imported_modules(f))
        if m == forbidden or m.startswith(forbidden + ".")
    ]
    assert not offending
