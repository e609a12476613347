"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, for browser tests.

Playwright's own browser download is never used (``playwright install`` fetches from the
web): the tests launch the system Chromium that ``infra/setup_env.sh`` installs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "var" / "screenshots"


def chromium_path() -> str:
    path = os.environ.get("CAMFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium on PATH: `apt-get install -y chromium` (infra/setup_env.sh does it)")
    return path


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the .venv (playwright)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path}: suspiciously small screenshot"
    return path


def broken_images(page) -> list[str]:
    """The images on the page that did not decode (natural size 0)."""
    return page.evaluate("""() => Array.from(document.images)
        .filter(img => !(img.complete && img.naturalWidth > 0 && img.naturalHeight > 0))
        .map(img => img.alt || img.src.slice(0, 60))""")
