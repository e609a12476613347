"""Alerts in words, for people: ``why(alert)`` is one plain sentence saying what the rule saw,
``local_time(ms, zone)`` a time in the deployment's time zone.

Pure (standard library only): the console, the report and notifications all say an alert the
same way. Each rule's evidence JSON is read with the keys its rule writes (transforms/alerts.py,
behaviour.py, anomaly.py, watchlist.py); an unknown type, a missing key or evidence that is not
JSON falls back to a generic sentence, so a record from a newer or older job never breaks a page.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo


def evidence_of(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The alert's evidence as a dict ({} when absent, not JSON or not an object)."""
    raw = alert.get("evidence")
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# -- small words --------------------------------------------------------------------------
def duration(ms: float | int | None) -> str:
    """``850 ms``, ``12 s``, ``2 min 5 s``, ``1 h 10 min``: as a person says it."""
    ms = int(ms or 0)
    if ms < 1000:
        return f"{ms} ms"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def number(value: float | int) -> str:
    """At most two decimals, none when whole (``6``, ``2.5``, ``0.62``)."""
    return f"{round(float(value), 2):g}"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def _who(alert: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    """``person #3``: the class the rule is about and its track, when it has one."""
    track = alert.get("track_id")
    track = ev.get("track_id") if track is None else track
    subject = alert.get("subject") or "object"
    return f"{subject} #{track}" if track is not None else str(subject)


def _zone(ev: Mapping[str, Any]) -> str:
    return f" in zone '{ev['zone_id']}'" if ev.get("zone_id") else ""


def _side(direction: str) -> str:
    return {"a_to_b": "from side A to side B", "b_to_a": "from side B to side A"}.get(
        direction, direction)


# -- one sentence per rule ----------------------------------------------------------------
def _crowd_limit(a, ev):
    return (f"{ev['max_persons_in_frame']} people in view at once, limit {ev['crowd_limit']} "
            f"(window of {plural(int(ev['frames']), 'frame')})")


def _intrusion(a, ev):
    return (f"{_who(a, ev)} inside restricted zone '{ev['zone_id']}' for "
            f"{duration(ev['inside_ms'])} (alerts after {duration(ev['min_inside_ms'])})")


def _loitering(a, ev):
    return (f"{_who(a, ev)} stayed in zone '{ev['zone_id']}' for {duration(ev['dwell_ms'])}, "
            f"limit {duration(ev['max_dwell_ms'])}")


def _illegal_parking(a, ev):
    return (f"{_who(a, ev)} stopped in no-parking zone '{ev['zone_id']}' for "
            f"{duration(ev['stopped_ms'])}, limit {duration(ev['max_stopped_ms'])}")


def _zone_crowd(a, ev):
    return (f"{ev['people_inside']} people in zone '{ev['zone_id']}', limit {ev['max_people']}, "
            f"for {duration(ev['over_ms'])}")


def _wrong_way(a, ev):
    allowed = ("both ways" if ev["allowed"] == "both" else _side(ev["allowed"]).replace("from ", ""))
    return (f"{_who(a, ev)} crossed line '{ev['line_id']}' {_side(ev['direction'])}; "
            f"allowed: {allowed}")


def _littering(a, ev):
    return (f"{_who(a, ev)} left{_zone(ev)} for {duration(ev['static_ms'])} "
            f"(limit {duration(ev['min_static_ms'])}), its owner gone for "
            f"{duration(ev['owner_gone_ms'])}")


def _fall(a, ev):
    confirmed = f", confirmed by the {ev['confirmed_by']}" if ev.get("confirmed_by") else ""
    return (f"{_who(a, ev)} went down and stayed down for {duration(ev['down_ms'])} "
            f"(alerts after {duration(ev['min_down_ms'])}){confirmed}")


def _running(a, ev):
    return (f"{_who(a, ev)} running at {number(ev['speed_heights_per_s'])} body heights/s "
            f"for {duration(ev['running_ms'])} (threshold {number(ev['min_speed'])})")


def _crowd_dispersal(a, ev):
    return (f"{ev['fleeing_tracks']} of {ev['tracked_moving']} moving people ran outwards at "
            f"once, median {number(ev['median_speed_heights_per_s'])} body heights/s")


ANOMALY_WORDS = {"crowd_surge": "far more", "unusual_absence": "far fewer",
                 "traffic_jam": "far more"}


def _anomaly(a, ev):
    # The baseline is what this camera usually sees in this hour of the week.
    metric = "people" if ev["metric"] == "persons" else "vehicles"
    text = (f"{ANOMALY_WORDS[a['type']]} {metric} than usual{_zone(ev)}: "
            f"{number(ev['value'])} against a usual {number(ev['baseline_mean'])} at this hour "
            f"(z {number(ev['z'])}, threshold {number(ev['z_threshold'])}, "
            f"{plural(int(ev['consecutive_windows']), 'window')} in a row)")
    if a["type"] == "traffic_jam" and ev.get("vehicle_speed") is not None:
        text += f", moving at {number(ev['vehicle_speed'])} body heights/s"
    return text


def _camera_offline(a, ev):
    return (f"no frame for {duration(ev['silent_ms'])} "
            f"(offline after {duration(ev['offline_after_ms'])})")


def _camera_recovered(a, ev):
    return f"frames again after {duration(ev['silent_ms'])} of silence"


def _listed(a, ev) -> str:
    """``W-7, Barack Obama, wanted``: who the watchlist says it is."""
    parts = [a.get("subject"), ev.get("name"), ev.get("category")]
    return ", ".join(str(p) for p in parts if p)


def _confirmed(ev) -> str:
    return f"{plural(int(ev['confirmations']), 'matching frame')}"


def _watchlist_face(a, ev):
    return (f"face matches watchlist entry {_listed(a, ev)}: similarity "
            f"{number(ev['similarity'])} (threshold {number(ev['threshold'])}), {_confirmed(ev)}")


def _watchlist_plate(a, ev):
    how = "exactly" if ev.get("exact") else f"at distance {number(ev['distance'])}"
    return (f"plate read {ev['plate_read']} matches {ev['plate_listed']} {how} "
            f"(watchlist entry {_listed(a, ev)}), {_confirmed(ev)}")


SENTENCES: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], str]] = {
    "crowd_limit": _crowd_limit, "intrusion": _intrusion, "loitering": _loitering,
    "illegal_parking": _illegal_parking, "zone_crowd": _zone_crowd, "wrong_way": _wrong_way,
    "littering": _littering, "fall": _fall, "running": _running,
    "crowd_dispersal": _crowd_dispersal, "crowd_surge": _anomaly, "unusual_absence": _anomaly,
    "traffic_jam": _anomaly, "camera_offline": _camera_offline,
    "camera_recovered": _camera_recovered, "watchlist_face": _watchlist_face,
    "watchlist_plate": _watchlist_plate,
}


def generic(alert: Mapping[str, Any]) -> str:
    """For a type this module does not know, or evidence it cannot read."""
    kind = str(alert.get("type") or "alert").replace("_", " ")
    subject = alert.get("subject")
    score = alert.get("score")
    text = f"{kind}{f' ({subject})' if subject else ''}"
    if isinstance(score, (int, float)):
        text += f", score {number(score)}"
    return text


def why(alert: Mapping[str, Any]) -> str:
    """One sentence saying what the alert's rule saw; never raises."""
    try:
        sentence = SENTENCES.get(str(alert.get("type")))
        text = sentence(alert, evidence_of(alert)) if sentence else generic(alert)
    except (KeyError, TypeError, ValueError, AttributeError):
        text = generic(alert)
    return text[:1].upper() + text[1:]


# -- time -----------------------------------------------------------------------------------
def zone_info(zone: str | tzinfo | None) -> tzinfo:
    if zone is None:
        return timezone.utc
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def offset_text(moment: datetime) -> str:
    """``+07``, ``-03:30``, ``UTC``: the short offset people read after a time."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours:02d}" + (f":{minutes:02d}" if minutes else "")


def local_time(ms: int | None, zone: str | tzinfo | None = None, seconds: bool = True) -> str:
    """``2026-12-01 21:04:05 +07``: epoch milliseconds in ``zone`` (an IANA name or tzinfo;
    None: UTC), with its offset so that a time read elsewhere is never misread. '' for None."""
    if ms is None:
        return ""
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(zone_info(zone))
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + offset_text(moment)
