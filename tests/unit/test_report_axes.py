"""The report's time axes suit any range: from an hour to ten years the 'alerts over time'
chart has at most ~48 bars holding every alert, and tick labels that say the year, month or
day where they change (not '01 Jan 00:00' on every tick)."""
from __future__ import annotations

import zoneinfo

import pytest

from camflow.services import report

HOUR, DAY = 3_600_000, 86_400_000
NOW = 1_764_000_000_000  # 2025-11-24


def alerts_chart(span_ms: int, count: int, monkeypatch, tz="Asia/Ho_Chi_Minh"):
    """The chart over ``span_ms`` up to NOW with ``count`` alerts spread over it: the figure's
    axes (captured before it becomes a PNG)."""
    alerts = [(f"a-{i}", ("crowd_limit", "loitering")[i % 2], "warning", "cam", NOW - span_ms
               + (i + 1) * span_ms // (count + 1)) for i in range(count)]
    data = report.ReportData(since_ms=NOW - span_ms, until_ms=NOW, alerts=alerts)
    figures = []
    monkeypatch.setattr(report, "png", lambda fig: figures.append(fig) or "png")
    assert report.figure_alerts_over_time(data, zoneinfo.ZoneInfo(tz)) == "png"
    fig = figures[0]
    fig.canvas.draw()
    return fig.axes[0]


def shown_labels(ax) -> list[str]:
    """The tick labels inside the axis' range."""
    low, high = ax.get_xlim()
    return [label.get_text() for tick, label in zip(ax.get_xticks(), ax.get_xticklabels())
            if low <= tick <= high and label.get_text()]


@pytest.mark.parametrize("span_ms", [HOUR, 24 * HOUR, 7 * DAY, 90 * DAY, 365 * DAY, 3650 * DAY])
def test_every_range_gets_readable_bars_holding_every_alert(span_ms, monkeypatch):
    ax = alerts_chart(span_ms, 60, monkeypatch)
    bars = [p for p in ax.patches]
    tops = {}
    for bar in bars:  # stacked: the top of each column is the alerts in its bucket
        tops[bar.get_x()] = max(tops.get(bar.get_x(), 0), bar.get_y() + bar.get_height())
    assert sum(tops.values()) == 60
    assert len(tops) <= 49
    labels = shown_labels(ax)
    assert len(labels) >= 3 and len(set(labels)) >= 2, labels  # not one label on every tick
    assert ax.get_ylabel().startswith("alerts per ")


def test_ten_years_read_as_years(monkeypatch):
    ax = alerts_chart(3650 * DAY, 60, monkeypatch)
    labels = shown_labels(ax)
    assert len(labels) >= 3 and all(label.isdigit() and 2015 <= int(label) <= 2026
                                    for label in labels), labels
    assert ax.get_ylabel() in ("alerts per 91 days", "alerts per 365 days")


def test_bucket_words():
    assert [report.bucket_text(m * 60_000) for m in (5, 60, 120, 1440, 7 * 1440)] == \
        ["5 min", "hour", "2 h", "day", "7 days"]
    assert report.bucket_ms(3650 * DAY) <= 3650 * DAY / 40
