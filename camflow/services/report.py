"""``camflow report``: the analyst store over a time range as one self-contained HTML file.

Alerts per type and camera over time, the top alerts (each with its reason in words and its
snapshot from the evidence store), hourly counts by class per camera (heatmaps), the top
anomaly scores, each watchlist subject's path across camera sites (on the sites' coordinates
from the config) and evidence thumbnails. Plots are drawn here with matplotlib (Agg) and
embedded as PNG data URIs, snapshots as scaled-down JPEG data URIs, so the file opens offline
and can be mailed or archived as is. Times are in the deployment's ``time_zone`` unless the
caller names another.
"""
from __future__ import annotations

import base64
import io
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # server-side rendering, no display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment  # noqa: E402

from camflow.config import Config  # noqa: E402
from camflow.core.evidence_store import EvidenceStore, configured_evidence  # noqa: E402
from camflow.core.frame_store import FrameRefError  # noqa: E402
from camflow.services.store import AnalystStore  # noqa: E402
from camflow.transforms.alert_text import local_time, why  # noqa: E402

log = logging.getLogger("camflow.services.report")

MAX_CAMERAS = 20      # rows in the per-camera plots (the busiest ones)
MAX_CLASSES = 4       # heatmaps (the most seen classes)
TOP_ANOMALIES = 10
MAX_THUMBNAILS = 24
MAX_SUBJECTS = 12
TOP_ALERTS = 12               # the most severe alerts of the period, listed with their snapshot
SNAPSHOT_WIDTH = 480          # px: snapshots are scaled down to this in the report...
SNAPSHOT_MAX_BYTES = 60_000   # ...and re-encoded smaller until they fit (12 of them: < 1 MB)


@dataclass
class Site:
    camera_id: str
    name: str
    lat: float | None
    lon: float | None


@dataclass
class ReportData:
    since_ms: int
    until_ms: int
    alerts: list[tuple] = field(default_factory=list)        # alert_id, type, severity, camera, ms, subject, score
    windows: list[tuple] = field(default_factory=list)       # camera, start, end, frames, tracks, anomaly
    counts: list[tuple] = field(default_factory=list)        # camera, start, end, class, unique, max
    sightings: list[tuple] = field(default_factory=list)     # subject, kind, camera, ms, score
    evidence: list[tuple] = field(default_factory=list)      # alert_id, type, camera, ms, subject, jpeg
    top_alerts: list[dict] = field(default_factory=list)     # alert columns + "snapshot" (JPEG or None)
    plates: dict[str, list[tuple]] = field(default_factory=dict)  # plate -> (plate, "plate", camera, ms, 1.0)
    frames: int = 0


TOP_ALERT_COLUMNS = ("alert_id", "type", "severity", "camera_id", "time_ms", "subject", "score",
                     "track_id", "evidence", "evidence_ref")


def load(store: AnalystStore, since_ms: int, until_ms: int,
         evidence_store: EvidenceStore | None = None) -> ReportData:
    """Everything the report shows, read from the store in a handful of queries; the top
    alerts' snapshots from ``evidence_store`` (None: none)."""
    rng = (since_ms, until_ms)
    data = ReportData(since_ms, until_ms)
    data.alerts = store.query(
        "SELECT alert_id, type, severity, camera_id, time_ms, subject, score FROM alerts "
        "WHERE time_ms >= %s AND time_ms < %s ORDER BY time_ms", rng)
    data.windows = store.query(
        "SELECT camera_id, window_start_ms, window_end_ms, frames, unique_tracks, anomaly_score "
        "FROM aggregates WHERE window_start_ms >= %s AND window_start_ms < %s", rng)
    data.counts = store.query(
        "SELECT camera_id, window_start_ms, window_end_ms, class_name, unique_tracks, max_in_frame "
        "FROM aggregate_counts WHERE window_start_ms >= %s AND window_start_ms < %s", rng)
    data.sightings = store.query(
        "SELECT subject_id, kind, camera_id, time_ms, score FROM sightings "
        "WHERE time_ms >= %s AND time_ms < %s ORDER BY subject_id, time_ms", rng)
    data.evidence = [
        (alert_id, kind, camera, ms, subject, bytes(jpeg)) for alert_id, kind, camera, ms, subject, jpeg in
        store.query("SELECT a.alert_id, a.type, a.camera_id, a.time_ms, a.subject, e.jpeg "
                    "FROM alerts a JOIN alert_evidence e ON e.alert_id = a.alert_id "
                    "WHERE a.time_ms >= %s AND a.time_ms < %s ORDER BY a.time_ms DESC LIMIT %s",
                    (*rng, MAX_THUMBNAILS))]
    # Most severe first, then the highest score: what an analyst looks at first.
    data.top_alerts = [dict(zip(TOP_ALERT_COLUMNS, row)) for row in store.query(
        f"SELECT {', '.join(TOP_ALERT_COLUMNS)} FROM alerts WHERE time_ms >= %s AND time_ms < %s "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, "
        "score DESC NULLS LAST, time_ms DESC LIMIT %s", (*rng, TOP_ALERTS))]
    for alert in data.top_alerts:
        alert["snapshot"] = None
        if evidence_store is None or not alert["evidence_ref"]:
            continue
        try:
            alert["snapshot"] = report_snapshot(evidence_store, alert["evidence_ref"])
        except FrameRefError as exc:  # a reference outside the evidence store is never read
            log.warning("report: alert %s: %s", alert["alert_id"], exc)
        except Exception as exc:  # noqa: BLE001 - the store itself (S3, disk): try no more
            log.warning("report: the evidence store is unavailable (%s): no snapshots", exc)
            evidence_store = None
    data.frames = store.query("SELECT COUNT(*) FROM frame_analyses "
                              "WHERE capture_ms >= %s AND capture_ms < %s", rng)[0][0]
    return data


def sites(config: Config) -> dict[str, Site]:
    return {c.id: Site(c.id, c.site_name, c.location.lat if c.location else None, c.location.lon if c.location else None)
            for c in config.cameras}


def tumbling_only(rows: list[tuple]) -> list[tuple]:
    """Rows of each camera's shortest windows: the store also holds the sliding windows,
    which overlap and would count everything several times."""
    shortest: dict[str, int] = {}
    for row in rows:
        shortest[row[0]] = min(shortest.get(row[0], row[2] - row[1]), row[2] - row[1])
    return [row for row in rows if row[2] - row[1] == shortest[row[0]]]


# -- figures --------------------------------------------------------------------------------
def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _dt(ms: int, tz) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(tz)


# Bar widths, in minutes: up to a day, then days, a week, a month (30 d), a quarter, a year.
BUCKET_MINUTES = (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2 * 1440, 7 * 1440,
                  14 * 1440, 30 * 1440, 91 * 1440, 365 * 1440)


def bucket_ms(span_ms: int) -> int:
    """A round bucket giving at most ~48 bars over the span, whatever its length."""
    for minutes in BUCKET_MINUTES:
        if span_ms / (minutes * 60_000) <= 48:
            return minutes * 60_000
    return BUCKET_MINUTES[-1] * 60_000


def bucket_text(step_ms: int) -> str:
    """``10 min``, ``2 h``, ``day``, ``7 days``: the bar width in words."""
    minutes = step_ms // 60_000
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 1440:
        return "hour" if minutes == 60 else f"{minutes // 60} h"
    days = minutes // 1440
    return "day" if days == 1 else f"{days} days"


def time_axis(ax, tz) -> None:
    """Ticks and labels that suit the range shown (minutes to decades), in ``tz``: the
    concise formatter names the year, month or day once where the ticks change it."""
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))


def figure_alerts_over_time(data: ReportData, tz) -> str | None:
    if not data.alerts:
        return None
    step = bucket_ms(data.until_ms - data.since_ms)
    first = data.since_ms - data.since_ms % step
    edges = list(range(first, data.until_ms + step, step))
    types = [t for t, _ in Counter(a[1] for a in data.alerts).most_common()]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    bottom = np.zeros(len(edges) - 1)
    for kind in types:
        hist, _ = np.histogram([a[4] for a in data.alerts if a[1] == kind], bins=edges)
        ax.bar([_dt(e, tz) for e in edges[:-1]], hist, width=step / 86_400_000, bottom=bottom,
               align="edge", label=kind, edgecolor="white", linewidth=0.3)
        bottom += hist
    ax.set_xlim(_dt(data.since_ms, tz), _dt(data.until_ms, tz))
    time_axis(ax, tz)
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))  # counts
    ax.set_ylabel(f"alerts per {bucket_text(step)}")
    ax.legend(fontsize=8, ncol=min(4, len(types)), loc="upper left", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Alerts over time, by type")
    return png(fig)


def figure_alerts_by_camera(data: ReportData) -> str | None:
    if not data.alerts:
        return None
    per_camera = Counter(a[3] for a in data.alerts)
    cameras = [c for c, _ in per_camera.most_common(MAX_CAMERAS)][::-1]
    types = [t for t, _ in Counter(a[1] for a in data.alerts).most_common()]
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(cameras) + 1.4))
    left = np.zeros(len(cameras))
    for kind in types:
        counts = Counter(a[3] for a in data.alerts if a[1] == kind)
        values = np.array([counts.get(c, 0) for c in cameras])
        ax.barh(cameras, values, left=left, label=kind)
        left += values
    ax.set_xlabel("alerts")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title("Alerts per camera, by type")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def figure_hourly_heatmaps(data: ReportData, tz) -> str | None:
    """Distinct tracks per hour of day, per camera, one heatmap per class."""
    rows = tumbling_only(data.counts)
    if not rows:
        return None
    grid: dict[str, dict[str, np.ndarray]] = defaultdict(lambda: defaultdict(lambda: np.zeros(24)))
    totals: Counter = Counter()
    for camera, start, _end, name, unique, maximum in rows:
        value = unique if unique is not None else maximum
        grid[name][camera][_dt(start, tz).hour] += value
        totals[name] += value
    classes = [c for c, _ in totals.most_common(MAX_CLASSES)]
    fig, axes = plt.subplots(len(classes), 1, squeeze=False,
                             figsize=(11, sum(0.32 * min(len(grid[c]), MAX_CAMERAS) + 1.2 for c in classes)))
    for ax, name in zip(axes[:, 0], classes):
        cameras = sorted(grid[name], key=lambda c: -grid[name][c].sum())[:MAX_CAMERAS]
        matrix = np.array([grid[name][c] for c in cameras])
        image = ax.imshow(matrix, aspect="auto", cmap="YlOrRd", interpolation="nearest")
        ax.set_yticks(range(len(cameras)), cameras, fontsize=8)
        ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
        ax.set_title(f"{name}: distinct tracks per hour of day ({tz})", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return png(fig)


def top_anomalies(data: ReportData) -> list[dict]:
    scored = [w for w in tumbling_only(data.windows) if w[5] is not None]
    scored.sort(key=lambda w: -abs(w[5]))  # signed: an empty square is as unusual as a crowd
    return [{"camera": w[0], "start_ms": w[1], "end_ms": w[2], "frames": w[3], "tracks": w[4],
             "score": w[5]} for w in scored[:TOP_ANOMALIES]]


def figure_anomalies(rows: list[dict], tz) -> str | None:
    if not rows:
        return None
    labels = [f"{r['camera']}  {_dt(r['start_ms'], tz):%d %b %H:%M}" for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.33 * len(rows) + 1.2))
    ax.barh(labels, [r["score"] for r in rows][::-1], color="#7b3294")
    ax.set_xlabel("anomaly score (robust z vs the camera's hour-of-week baseline)")
    ax.set_title("Top anomaly scores")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def figure_subject_path(subject: str, sightings: list[tuple], camera_sites: dict[str, Site],
                        tz) -> str:
    """The subject's sightings in time order: over the camera sites' coordinates (when the
    config gives them) and as a timeline."""
    located = [s for s in sightings if (site := camera_sites.get(s[2])) and site.lat is not None
               and site.lon is not None]
    with_map = bool(located)
    fig, axes = plt.subplots(1, 2 if with_map else 1, squeeze=False,
                             figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.3]} if with_map else None)
    if with_map:
        ax = axes[0, 0]
        known = [s for s in camera_sites.values() if s.lat is not None and s.lon is not None]
        ax.scatter([s.lon for s in known], [s.lat for s in known], s=12, color="#bbbbbb",
                   label="camera sites", zorder=1)
        lons = [camera_sites[s[2]].lon for s in located]
        lats = [camera_sites[s[2]].lat for s in located]
        ax.plot(lons, lats, color="#d7191c", linewidth=1.2, zorder=2, alpha=0.8)
        for i in range(len(located) - 1):
            ax.annotate("", xy=(lons[i + 1], lats[i + 1]), xytext=(lons[i], lats[i]),
                        arrowprops={"arrowstyle": "->", "color": "#d7191c"}, zorder=3)
        ax.scatter(lons, lats, color="#d7191c", s=40, zorder=4, label=f"{subject} sightings")
        for i, s in enumerate(located):
            ax.annotate(f"{i + 1}. {_dt(s[3], tz):%H:%M}", (lons[i], lats[i]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.margins(0.08)
        ax.set_aspect("equal", adjustable="datalim")  # degrees of lat and lon alike near the equator
        ax.ticklabel_format(useOffset=False, style="plain")  # degrees as read on a map
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.legend(fontsize=8, loc="best", frameon=False)
        ax.set_title(f"{subject}: path across camera sites", fontsize=10)
        ax.grid(alpha=0.2)
    ax = axes[0, -1]
    cameras = list(dict.fromkeys(s[2] for s in sightings))
    times = [_dt(s[3], tz) for s in sightings]
    ys = [cameras.index(s[2]) for s in sightings]
    ax.plot(times, ys, "-o", color="#2c7bb6")
    ax.set_yticks(range(len(cameras)),
                  [f"{c}\n{camera_sites[c].name}" if c in camera_sites else c for c in cameras],
                  fontsize=7)
    if times[-1] - times[0] < timedelta(minutes=10):  # one sighting, or a few close together
        middle = times[0] + (times[-1] - times[0]) / 2
        ax.set_xlim(middle - timedelta(minutes=10), middle + timedelta(minutes=10))
    time_axis(ax, tz)
    ax.set_title(f"{subject}: sightings timeline ({len(sightings)})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def thumbnail(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def scaled_jpeg(jpeg: bytes, width: int, max_bytes: int) -> bytes | None:
    """``jpeg`` at most ``width`` px wide and ``max_bytes`` long (the snapshot writer's own
    scaling: lower qualities, then smaller); None when it does not decode."""
    import cv2

    from camflow.transforms.evidence import Marks, SnapshotError, snapshot_jpeg
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    try:
        return snapshot_jpeg(image, Marks(), max_bytes, max_width=width)  # no marks: as it is
    except SnapshotError:
        return None


def report_snapshot(evidence_store: EvidenceStore, ref: str) -> bytes | None:
    """The snapshot ``ref`` names, scaled for the report; None when it has expired.
    ``FrameRefError`` for a reference outside the store, the store's errors as they come."""
    jpeg = evidence_store.get(ref)
    if not jpeg:
        return None  # expired from the evidence store
    return scaled_jpeg(jpeg, SNAPSHOT_WIDTH, SNAPSHOT_MAX_BYTES)


# -- HTML -----------------------------------------------------------------------------------
TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
 body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933; background: #f5f7fa; }
 header { background: #1f2933; color: #fff; padding: 16px 28px; }
 header h1 { margin: 0 0 4px; font-size: 20px; } header p { margin: 0; color: #cbd2d9; }
 main { padding: 8px 28px 32px; max-width: 1180px; }
 section { background: #fff; border-radius: 8px; padding: 14px 18px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
 h2 { font-size: 16px; margin: 0 0 10px; }
 .kpis { display: flex; gap: 14px; flex-wrap: wrap; }
 .kpi { background: #fff; border-radius: 8px; padding: 10px 16px; min-width: 120px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
 .kpi b { display: block; font-size: 22px; }
 img.plot { max-width: 100%; display: block; }
 table { border-collapse: collapse; font-size: 13px; } td, th { padding: 4px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; }
 .thumbs { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; width: 150px; font-size: 11px; }
 figure img { width: 150px; height: 150px; object-fit: cover; border-radius: 6px; background: #e4e7eb; }
 .empty { color: #7b8794; font-style: italic; }
 table.top td { vertical-align: top; } img.snapshot { width: 240px; border-radius: 6px; display: block; }
 .sev { font-weight: 600; text-transform: uppercase; font-size: 11px; }
</style></head><body>
<header><h1>{{ title }}</h1><p>{{ since }} to {{ until }} ({{ tz }}) &middot; generated {{ generated }}</p></header>
<main>
<div class="kpis">
 <div class="kpi"><b>{{ alerts }}</b>alerts</div>
 <div class="kpi"><b>{{ alert_cameras }}</b>cameras with alerts</div>
 <div class="kpi"><b>{{ frames }}</b>frames analysed</div>
 <div class="kpi"><b>{{ subjects|length }}</b>watchlist subjects seen</div>
</div>
<section id="alerts"><h2>Alerts per type and camera over time</h2>
{% if plots.alerts_time %}<img class="plot" alt="alerts over time" src="{{ plots.alerts_time }}">
<img class="plot" alt="alerts per camera" src="{{ plots.alerts_camera }}">
<table><tr><th>type</th><th>alerts</th></tr>{% for kind, n in by_type %}<tr><td>{{ kind }}</td><td>{{ n }}</td></tr>{% endfor %}</table>
{% else %}<p class="empty">No alerts in this period.</p>{% endif %}</section>
<section id="top-alerts"><h2>Top alerts</h2>
{% if top_alerts %}<table class="top"><tr><th>snapshot</th><th>alert</th><th>camera</th><th>time</th></tr>
{% for a in top_alerts %}<tr id="top-{{ a.alert_id }}"><td>{% if a.src %}<img class="snapshot" alt="snapshot {{ a.alert_id }}" src="{{ a.src }}">{% endif %}</td>
<td><span class="sev">{{ a.severity }}</span> <b>{{ a.type }}</b><br><span class="why">{{ a.why }}</span></td>
<td>{{ a.camera }}{% if a.site and a.site != a.camera %}<br>{{ a.site }}{% endif %}</td><td>{{ a.time }}</td></tr>{% endfor %}</table>
{% else %}<p class="empty">No alerts in this period.</p>{% endif %}</section>
<section id="counts"><h2>Hourly counts by class per camera</h2>
{% if plots.heatmaps %}<img class="plot" alt="hourly counts heatmap" src="{{ plots.heatmaps }}">
{% else %}<p class="empty">No aggregates in this period.</p>{% endif %}</section>
<section id="anomalies"><h2>Top anomaly scores</h2>
{% if anomalies %}<img class="plot" alt="top anomaly scores" src="{{ plots.anomalies }}">
<table><tr><th>camera</th><th>window</th><th>frames</th><th>tracks</th><th>score</th></tr>
{% for a in anomalies %}<tr><td>{{ a.camera }}</td><td>{{ a.window }}</td><td>{{ a.frames }}</td><td>{{ a.tracks }}</td><td>{{ "%.2f"|format(a.score) }}</td></tr>{% endfor %}</table>
{% else %}<p class="empty">No scored windows in this period.</p>{% endif %}</section>
<section id="subjects"><h2>Watchlist subjects: sightings paths</h2>
{% for s in subjects %}<h3>{{ s.subject }} <small>({{ s.sightings }} sightings at {{ s.cameras }} cameras)</small></h3>
<img class="plot" alt="path of {{ s.subject }}" src="{{ s.plot }}">{% else %}<p class="empty">No watchlist sightings in this period.</p>{% endfor %}</section>
{% if plates %}<section id="plates"><h2>Vehicles by plate: paths</h2>
{% for p in plates %}<h3>{{ p.plate }} <small>({{ p.passages }} passages at {{ p.cameras }} cameras)</small></h3>
{% if p.plot %}<img class="plot" alt="path of {{ p.plate }}" src="{{ p.plot }}">{% else %}<p class="empty">No vehicle track read {{ p.plate }} in this period.</p>{% endif %}{% endfor %}</section>{% endif %}
<section id="evidence"><h2>Evidence</h2>
{% if thumbs %}<div class="thumbs">{% for t in thumbs %}<figure><img alt="evidence {{ t.alert_id }}" src="{{ t.src }}">
<figcaption><b>{{ t.type }}</b> {{ t.subject or "" }}<br>{{ t.camera }}<br>{{ t.time }}</figcaption></figure>{% endfor %}</div>
{% else %}<p class="empty">No evidence images in this period.</p>{% endif %}</section>
</main></body></html>
"""


def render(data: ReportData, config: Config, tz_name: str | None = None, title: str | None = None) -> str:
    """The report as HTML, times in ``tz_name`` (None: the config's ``time_zone``)."""
    tz_name = tz_name or config.time_zone
    tz = ZoneInfo(tz_name)
    camera_sites = sites(config)
    anomalies = top_anomalies(data)
    subjects = []
    by_subject: dict[str, list[tuple]] = defaultdict(list)
    for row in data.sightings:
        by_subject[row[0]].append(row)
    for subject in sorted(by_subject, key=lambda s: -len(by_subject[s]))[:MAX_SUBJECTS]:
        rows = by_subject[subject]
        subjects.append({"subject": subject, "sightings": len(rows),
                         "cameras": len({r[2] for r in rows}),
                         "plot": figure_subject_path(subject, rows, camera_sites, tz)})
    fmt = "%Y-%m-%d %H:%M"
    html = Environment(autoescape=True).from_string(TEMPLATE).render(
        title=title or f"camflow report: {config.deployment}",
        since=_dt(data.since_ms, tz).strftime(fmt), until=_dt(data.until_ms, tz).strftime(fmt),
        tz=tz_name, generated=local_time(int(datetime.now(timezone.utc).timestamp() * 1000), tz,
                                         seconds=False),
        alerts=len(data.alerts), alert_cameras=len({a[3] for a in data.alerts}), frames=data.frames,
        by_type=Counter(a[1] for a in data.alerts).most_common(),
        plots={"alerts_time": figure_alerts_over_time(data, tz),
               "alerts_camera": figure_alerts_by_camera(data),
               "heatmaps": figure_hourly_heatmaps(data, tz),
               "anomalies": figure_anomalies(anomalies, tz)},
        anomalies=[{**a, "window": f"{_dt(a['start_ms'], tz):%d %b %H:%M}-{_dt(a['end_ms'], tz):%H:%M}"}
                   for a in anomalies],
        subjects=subjects,
        plates=[{"plate": plate, "passages": len(rows), "cameras": len({r[2] for r in rows}),
                 "plot": figure_subject_path(plate, rows, camera_sites, tz) if rows else None}
                for plate, rows in data.plates.items()],
        top_alerts=[{"alert_id": a["alert_id"], "type": a["type"], "severity": a["severity"],
                     "why": why(a), "camera": a["camera_id"],
                     "site": camera_sites[a["camera_id"]].name if a["camera_id"] in camera_sites else "",
                     "time": local_time(a["time_ms"], tz),
                     "src": thumbnail(a["snapshot"]) if a.get("snapshot") else None}
                    for a in data.top_alerts],
        thumbs=[{"alert_id": e[0], "type": e[1], "camera": e[2], "time": _dt(e[3], tz).strftime(fmt),
                 "subject": e[4], "src": thumbnail(e[5])} for e in data.evidence])
    return html


def build_report(config: Config, since_ms: int, until_ms: int, store_url: str | None = None,
                 tz_name: str | None = None, plates: list[str] = ()) -> str:
    """The report over ``[since_ms, until_ms)``; times in ``tz_name`` (None: the config's
    ``time_zone``), snapshots from the config's evidence store; ``plates``: each plate's path
    across camera sites too (a vehicle's path is personal data: each is audited)."""
    import getpass

    from camflow.services.search import path_rows, plate_path
    store = AnalystStore(store_url or config.store.url)
    try:
        data = load(store, since_ms, until_ms, configured_evidence(config))
        for plate in plates:
            store.audit_access(getpass.getuser(), "plate_search", plate, "report")
            data.plates[plate] = path_rows(plate, [p for p in plate_path(store, plate, since_ms)
                                                   if p.first_ms < until_ms])
    finally:
        store.close()
    return render(data, config, tz_name)
