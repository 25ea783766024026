"""The rules of docs/ARCHITECTURE.md that the import contract (`lint-imports`, run by
`make lint`) does not check itself."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dxray"
INITS = sorted(PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("init", INITS, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_package_has_a_facade(init):
    """A package's __init__ is its map (a docstring), never a re-export of its names."""
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{init}: say what the package holds in a docstring"
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    exported = [n for n in tree.body if "__all__" in ast.unparse(n)]
    assert imports == [] and exported == [], f"{init}: import from the modules, not the package"


def test_docstrings_point_only_at_docs_that_exist():
    """A module that says "see docs/X.md" names a file that is there."""
    import re

    root = PACKAGE.parent
    missing = set()
    for path in PACKAGE.rglob("*.py"):
        for name in re.findall(r"docs/([A-Z_]+\.md)", path.read_text()):
            if not (root / "docs" / name).is_file():
                missing.add(f"{path.relative_to(root)} -> docs/{name}")
    assert not missing, sorted(missing)
