"""The house keeps its shape: import-linter refuses an import that points up the layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and their contracts, free to be broken."""
    root = tmp_path_factory.mktemp("house")
    for package in ("router", "model_workers"):
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, root / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_its_contracts(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("router/core/_bad.py", "import router.gateway.app", "import down the layers"),
        ("router/storage/_bad.py", "from router.recording import recorder", "layers"),
        ("router/routing/_bad.py", "import router.bandit.runtime", "layers"),
        ("model_workers/_bad.py", "from router.routing import table", "model workers"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tree: Path, module: str, bad_import: str, contract: str
) -> None:
    bad = tree / module
    bad.write_text(f"{bad_import}\n")
    try:
        result = lint(tree)
    finally:
        bad.unlink()
    assert result.returncode == 1, result.stdout
    assert "BROKEN" in result.stdout and contract in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout
