"""The console ships whole: its templates, its script and the charting library with its licence
are package data, so an installed Turnout serves the console with no internet access."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import router.console

HERE = Path(router.console.__file__).resolve().parent
ROOT = HERE.parents[1]


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["router.console"]
    files = [
        p.relative_to(HERE).as_posix()
        for folder in ("templates", "static")
        for p in (HERE / folder).rglob("*")
        if p.is_file()
    ]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert missing == []


def test_the_charting_library_ships_with_its_licence() -> None:
    vendor = HERE / "static" / "vendor" / "echarts"
    assert (vendor / "echarts.min.js").stat().st_size > 500_000
    assert "Apache License" in (vendor / "LICENSE").read_text()
    assert "Apache ECharts" in (vendor / "NOTICE").read_text()
    pages = "".join(p.read_text() for p in (HERE / "templates").glob("*.html"))
    assert "http://" not in pages.replace("http://127.0.0.1", "")  # nothing fetched from afar
    assert "https://" not in pages
