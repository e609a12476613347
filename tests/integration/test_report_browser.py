"""The report as a browser shows it: every plot, thumbnail and top alert's snapshot (from the
evidence store) decodes, offline (file://); times read in the deployment's zone (+07)."""
from __future__ import annotations

import pytest

from camflow.config import EvidenceStore as EvidenceSettings, load_config
from camflow.core.evidence_store import EvidenceStore
from camflow.services.report import build_report
from camflow.services.store import AnalystStore
from tests.integration.browser import REPO, broken_images, browser, screenshot  # noqa: F401
from tests.unit.test_report import CAMERAS, HOUR, NOW, evidence_jpeg, fill_store

pytestmark = [pytest.mark.integration]


def test_report_plots_render_in_headless_chromium(tmp_path, browser):  # noqa: F811
    url = f"duckdb:///{tmp_path}/analyst.duckdb"
    store = AnalystStore(url)
    expected = fill_store(store)
    # The period's most severe alert, its snapshot in the evidence store (as the job writes it).
    evidence_url = f"file://{tmp_path}/evidence"
    top = {"alert_id": "top1", "type": "crowd_limit", "severity": "critical", "camera_id": CAMERAS[2],
           "time_ms": NOW - 3 * HOUR, "score": 3.0, "subject": "person",
           "evidence": '{"crowd_limit": 10, "frames": 600, "max_persons_in_frame": 30}'}
    top["evidence_ref"] = EvidenceStore(evidence_url).put(top, "jpg", evidence_jpeg(5))
    store.upsert_alert(top)
    store.commit()
    store.close()
    config = load_config(REPO / "infra" / "config" / "phu-quoc.example.yaml")
    assert config.time_zone == "Asia/Ho_Chi_Minh"
    config = config.model_copy(update={"evidence": EvidenceSettings(url=evidence_url)})
    out = tmp_path / "report.html"
    out.write_text(build_report(config, NOW - 24 * HOUR, NOW, store_url=url), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1240, "height": 900}, offline=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    images = page.locator("img")
    assert images.count() == 5 + expected["evidence"] + 1  # + the top alert's snapshot
    assert broken_images(page) == []
    assert page.evaluate("() => document.querySelector('#top-top1 img.snapshot').naturalWidth") == 96
    row = page.inner_text("#top-top1")
    assert "30 people in view at once, limit 10 (window of 600 frames)" in row and "+07" in row
    sizes = page.evaluate("() => Array.from(document.querySelectorAll('img.plot')).map(i => i.naturalWidth)")
    assert len(sizes) == 5 and min(sizes) > 300  # real plots, not placeholders
    assert all(r.startswith(("file:", "data:")) for r in requests), requests
    path = screenshot(page, "report.png")
    print(f"screenshot: {path}")
    context.close()
