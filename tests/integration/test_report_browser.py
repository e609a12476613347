"""The report as a browser shows it: every plot and thumbnail decodes, offline (file://)."""
from __future__ import annotations

import pytest

from camflow.config import load_config
from camflow.services.report import build_report
from camflow.services.store import AnalystStore
from tests.integration.browser import REPO, broken_images, browser, screenshot  # noqa: F401
from tests.unit.test_report import HOUR, NOW, fill_store

pytestmark = [pytest.mark.integration]


def test_report_plots_render_in_headless_chromium(tmp_path, browser):  # noqa: F811
    url = f"duckdb:///{tmp_path}/analyst.duckdb"
    store = AnalystStore(url)
    expected = fill_store(store)
    store.close()
    config = load_config(REPO / "infra" / "config" / "phu-quoc.example.yaml")
    out = tmp_path / "report.html"
    out.write_text(build_report(config, NOW - 24 * HOUR, NOW, store_url=url,
                                tz_name="Asia/Ho_Chi_Minh"), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1240, "height": 900}, offline=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    images = page.locator("img")
    assert images.count() == 5 + expected["evidence"]
    assert broken_images(page) == []
    sizes = page.evaluate("() => Array.from(document.querySelectorAll('img.plot')).map(i => i.naturalWidth)")
    assert len(sizes) == 5 and min(sizes) > 300  # real plots, not placeholders
    assert all(r.startswith(("file:", "data:")) for r in requests), requests
    path = screenshot(page, "report.png")
    print(f"screenshot: {path}")
    context.close()
