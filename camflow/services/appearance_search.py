"""``camflow find`` and ``camflow similar``: people and vehicles by what they looked like.

The job writes one appearance record per track (``transforms/appearance.py``; the sink keeps
them in the analyst store's ``appearances`` table for ``store.embedding_retention_days``).

- ``find``: tracks by class, named colours (upper / lower body of a person, body of a vehicle),
  camera or site and time, largest crops first (the best evidence), grouped by site.
- ``similar``: the tracks that look most like one track (``CAMERA:TRACK`` or an alert's
  track): colour and embedding cosines mixed by ``job.appearance.colour_weight``, ranked by
  FAISS (exact inner product over the concatenated, weighted vectors, which is the weighted
  sum of the two cosines).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from camflow.config import Config
from camflow.transforms.appearance import canonical_colour


class AppearanceSearchError(ValueError):
    """A query that cannot run (unknown camera, site or track, bad colour or time)."""


@dataclass
class TrackMatch:
    """One track in an answer: where and when, what it looked like, and its score
    (``similar``: the mixed cosine; ``find``: the crop's height in pixels)."""

    appearance_id: str
    camera_id: str
    site: str
    track_id: int
    class_name: str
    first_ms: int
    last_ms: int
    colours: dict[str, str]
    heading: str | None
    score: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def site_of(config: Config) -> dict[str, str]:
    return {c.id: c.site_name for c in config.cameras}


def cameras_for(config: Config, cameras: list[str] | None, sites: list[str] | None) -> list[str] | None:
    """The cameras a query is limited to (None: every camera); unknown names are an error."""
    if not cameras and not sites:
        return None
    known = {c.id for c in config.cameras}
    chosen = set()
    for camera in cameras or []:
        if camera not in known:
            raise AppearanceSearchError(f"unknown camera {camera!r} (not in the config)")
        chosen.add(camera)
    for site in sites or []:
        at_site = [c.id for c in config.cameras if c.location and site.lower() in c.location.site.lower()]
        if not at_site:
            raise AppearanceSearchError(f"no camera at a site matching {site!r}")
        chosen.update(at_site)
    return sorted(chosen)


def parse_time(text: str | None, zone: str) -> int | None:
    """An ISO date-time in the deployment's time zone (or with its own offset) -> epoch ms."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AppearanceSearchError(f"{text!r}: expected a date-time like 2026-12-01T21:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return int(when.timestamp() * 1000)


def _match(row: dict, sites: dict[str, str], score: float) -> TrackMatch:
    colours = {part: row[f"{part}_colour"] for part in ("upper", "lower", "body")
               if row.get(f"{part}_colour")}
    return TrackMatch(row["appearance_id"], row["camera_id"], sites.get(row["camera_id"], ""),
                      int(row["track_id"]), row["class_name"], int(row["first_ms"]),
                      int(row["last_ms"]), colours, row.get("heading"), round(float(score), 4))


def find_tracks(store, config: Config, *, class_name: str | None = None,
                upper: str | None = None, lower: str | None = None, body: str | None = None,
                cameras: list[str] | None = None, sites: list[str] | None = None,
                since_ms: int | None = None, until_ms: int | None = None,
                limit: int = 50) -> list[TrackMatch]:
    """Tracks matching every filter, largest best crop first."""
    try:
        colours = {part: canonical_colour(name) for part, name in
                   (("upper", upper), ("lower", lower), ("body", body)) if name}
    except ValueError as exc:
        raise AppearanceSearchError(str(exc)) from None
    rows = store.appearances(class_name=class_name, cameras=cameras_for(config, cameras, sites),
                             since_ms=since_ms, until_ms=until_ms, colours=colours)
    sites_ = site_of(config)
    matches = [_match(row, sites_, row["y2"] - row["y1"]) for row in rows]
    matches.sort(key=lambda m: (-m.score, m.first_ms))
    return matches[:limit]


def _vectors(rows: list[dict], colour_weight: float, with_embedding: bool) -> np.ndarray:
    """[N, D] float32 rows whose inner products are the weighted sum of the cosines."""
    colour = np.stack([np.frombuffer(bytes(r["colour"]), "<f4") for r in rows])
    parts = [np.sqrt(colour_weight if with_embedding else 1.0) * colour]
    if with_embedding:
        embedding = np.stack([np.frombuffer(bytes(r["embedding"]), "<f4") for r in rows])
        parts.append(np.sqrt(1.0 - colour_weight) * embedding)
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def resolve_track(store, ref: str | None = None, alert_id: str | None = None) -> str:
    """The appearance id of ``CAMERA:TRACK`` (or an appearance id), or of an alert's track."""
    if alert_id:
        alert = store.alert(alert_id)
        if alert is None:
            raise AppearanceSearchError(f"no alert {alert_id!r} in the store")
        if alert.get("track_id") is None:
            raise AppearanceSearchError(f"alert {alert_id} names no track")
        camera_id, track_id = alert["camera_id"], int(alert["track_id"])
    else:
        camera_id, _, rest = (ref or "").rpartition(":")
        if store.appearances(appearance_ids=[ref]):
            return ref
        if not camera_id or not rest.lstrip("-").isdigit():
            raise AppearanceSearchError(f"--track {ref!r}: expected CAMERA:TRACK, e.g. port-gate:17")
        track_id = int(rest)
    found = store.track_appearance(camera_id, track_id)
    if found is None:
        raise AppearanceSearchError(f"no appearance record of track {track_id} at {camera_id} "
                                    "(too small, not a person or vehicle, or past retention)")
    return found


def similar_tracks(store, config: Config, appearance_id: str, *, since_ms: int | None = None,
                   until_ms: int | None = None, cameras: list[str] | None = None,
                   sites: list[str] | None = None, limit: int = 20,
                   colour_weight: float | None = None) -> tuple[TrackMatch, list[TrackMatch]]:
    """(the query track, the most similar other tracks of its class, best first)."""
    import faiss

    weight = config.job.appearance.colour_weight if colour_weight is None else colour_weight
    query_rows = store.appearances(appearance_ids=[appearance_id], vectors=True)
    if not query_rows:
        raise AppearanceSearchError(f"no appearance record {appearance_id!r}")
    query = query_rows[0]
    rows = [r for r in store.appearances(class_name=query["class_name"],
                                         cameras=cameras_for(config, cameras, sites),
                                         since_ms=since_ms, until_ms=until_ms, vectors=True)
            if r["appearance_id"] != appearance_id]
    sites_ = site_of(config)
    if not rows:
        return _match(query, sites_, 1.0), []
    # The embedding counts only where both sides have one from the same model (and size).
    model = query["embedding_model"] if query["embedding"] is not None else None
    with_embedding = model is not None and all(
        r["embedding"] is not None and r["embedding_model"] == model
        and len(r["embedding"]) == len(query["embedding"]) for r in rows)
    gallery = _vectors(rows, weight, with_embedding)
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    scores, order = index.search(_vectors([query], weight, with_embedding), min(limit, len(rows)))
    matches = [_match(rows[i], sites_, s) for s, i in zip(scores[0], order[0]) if i >= 0]
    return _match(query, sites_, 1.0), matches


def write_crops(store, matches: list[TrackMatch], folder: str | Path) -> list[Path]:
    """Each match's best crop as ``<rank>_<camera>_<track>.jpg`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crops = {r["appearance_id"]: r["crop_jpeg"] for r in store.appearances(
        appearance_ids=[m.appearance_id for m in matches], crops=True)}
    written = []
    for rank, match in enumerate(matches, 1):
        data = crops.get(match.appearance_id)
        if data:
            path = folder / f"{rank:03d}_{match.camera_id}_{match.track_id}.jpg"
            path.write_bytes(bytes(data))
            written.append(path)
    return written


def format_lines(matches: list[TrackMatch], zone: str, score_label: str) -> list[str]:
    """Grouped by site, in rank order within each site."""
    tz = ZoneInfo(zone)
    lines, by_site = [], {}
    for rank, match in enumerate(matches, 1):
        by_site.setdefault(match.site or match.camera_id, []).append((rank, match))
    for site, rows in by_site.items():
        lines.append(f"{site}")
        for rank, m in rows:
            start = datetime.fromtimestamp(m.first_ms / 1000, tz)
            colours = " ".join(f"{part} {name}" for part, name in m.colours.items())
            lines.append(f"  #{rank:<3} {start:%Y-%m-%d %H:%M:%S}  {m.camera_id:<24} track "
                         f"{m.track_id:<6} {m.class_name:<10} {colours:<26} "
                         f"{(m.last_ms - m.first_ms) / 1000:5.0f} s  {m.heading or '':<6} "
                         f"{score_label} {m.score:g}")
    return lines
