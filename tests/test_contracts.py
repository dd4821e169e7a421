"""Contracts the README states about the code itself: the error table it prints, the layout it describes,
the direction of the dependencies. Pure reads of the source tree (no media, no Ray)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bgservice import errors
from tests.conftest import REPO

PACKAGE = REPO / "bgservice"
README = (REPO / "README.md").read_text(encoding="utf-8")

# Layers, highest first: a module may import its own layer or a lower one, never a higher one.
LAYERS: list[set[str]] = [
    {"cli", "batch", "api", "web", "client", "__main__"},  # entry points
    {"jobs"},
    {"engines"},
    {"stages"},
    {"backgrounds", "storage"},
    {"io"},
    {"media", "models", "matte"},
    {"errors", "settings", "spec", "timecode", "interrupt", "counters"},
]
RANK = {name: len(LAYERS) - i for i, layer in enumerate(LAYERS) for name in layer}
ALLOWED_UPWARD: set[tuple[str, str]] = set()  # none: name one here and in the README if ever needed


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in out if name.startswith("bgservice.")]


def test_the_readme_prints_the_error_table_exactly() -> None:
    """The README's table is the one errors.TABLE renders: every code, its HTTP status, exit and summary."""
    table = errors.markdown_table()
    assert table in README
    for code in ("fetch_failed", "timeout", "invalid_settings", "url_not_allowed"):
        assert f"| `{code}` |" in table


def test_the_settings_know_exactly_the_registered_model_names() -> None:
    from bgservice.models.registry import model_names
    from bgservice.settings import MODEL_NAMES

    assert sorted(MODEL_NAMES) == sorted(model_names())


def test_dependencies_point_one_way() -> None:
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]
    unplaced = sorted({_top(p) for p in modules} - set(RANK))
    assert not unplaced, (
        f"place these in tests/test_contracts.py LAYERS (and the README's layout): {unplaced}"
    )
    upward = []
    for path in modules:
        me = _top(path)
        for line, name in _imports(path):
            target = name.split(".")[1]
            if target in RANK and RANK[target] > RANK[me] and (me, name) not in ALLOWED_UPWARD:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


@pytest.mark.parametrize("package", ["jobs", "io"])
def test_the_readme_layout_describes_every_module_of_jobs_and_io(package: str) -> None:
    layout = README.split("## Layout", 1)[1]
    assert f"{package}/" in layout
    names = sorted(p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__")
    missing = [name for name in names if f"{name}.py" not in layout]
    assert not missing, f"README layout does not name bgservice/{package}/{missing}"
    assert "container.py" in layout  # the one way a media file is opened (issue 9)
