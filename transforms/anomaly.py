"""Window anomaly scoring against a learned hour-of-week baseline, and camera liveness.

``WindowAnomaly(config).step(state, aggregate) -> AnomalyStep(state, alerts, extra)`` runs once
per window result (``aggregate.WindowCounts.result``), keyed by camera (or camera and zone: put
``zone_id`` in the aggregate dict). It scores the window *before* learning from it.

Baseline estimator (the choice, and why):
    per hour-of-week slot (168, local time, ``utc_offset_minutes``; Phu Quoc is UTC+7 without
    DST) and per metric, an exponentially weighted mean and variance (Welford-style EW update)
    of *winsorised* values: once a slot is warm, each new value is clipped to
    mean ± ``winsor_z`` · spread before it updates the slot. Clipping is what makes it robust:
    a one-hour festival crowd moves the baseline by at most ``winsor_z`` spreads times the
    learning rate, instead of dragging the mean and inflating the variance as a raw mean would.
    Exponential weighting (rate ``max(1/n, alpha)``: an exact mean for the first 1/alpha
    windows, then a memory of ~1/alpha windows) lets the baseline follow seasons and new
    roads. It costs three floats per slot and metric, O(1) per window, and merges nothing
    across keys. A median/MAD over a ring buffer would be exact but needs the buffer in state.

    The spread used for scoring is ``sqrt(var + min_spread²)``: counts of people are small
    integers, and a slot that was always 0 (night) has variance 0 - without a floor, one
    passer-by would be an infinite z-score.

Robust z = (value - mean) / spread. ``anomaly_score`` on the aggregate is the z of the metric
with the largest |z| (signed), None until the slot has ``warmup_windows`` windows.

Alerts fire when a condition holds for ``consecutive`` windows in a row and once per episode;
an episode ends after ``clear_windows`` windows without the condition. A gap between windows
(a window starting after the previous one ended) restarts the count.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from .alerts import INFO, WARNING, alert_record
from .detections import VEHICLE_CLASSES

STATE_VERSION = 1
HOUR_MS = 3_600_000
WEEK_SLOTS = 168
# 1970-01-01 was a Thursday; slot 0 is Monday 00:00-01:00 local time.
EPOCH_WEEKDAY = 3


class AnomalyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Which window value a metric reads: per-frame mean (steady), per-frame max, or distinct
    # tracks (counts arrivals, not occupancy).
    statistic: Literal["mean", "max", "unique_tracks"] = Field("mean", description=(
        "which window value a metric reads: per-frame mean, per-frame max, or distinct tracks"))
    utc_offset_minutes: int = Field(420, ge=-720, le=840, description=(
        "local time of the cameras, for the hour-of-week baseline slots (420: UTC+7, Vietnam)"))
    slots: Literal["hour_of_week", "hour_of_day"] = Field("hour_of_week", description=(
        "what a baseline is learned per: each hour of the week (168 slots: weekday and hour "
        "differ), or each hour of the day (24 slots: learns 7x faster, for a site without "
        "weeks of history or whose days are alike)"))
    warmup_windows: int = Field(10, ge=1, description="windows a slot must learn before scoring")
    alpha: float = Field(0.02, gt=0, le=1, description="minimum learning rate (memory ~1/alpha windows)")
    winsor_z: float = Field(3.0, gt=0, description="values beyond this z are clipped before learning")
    min_spread: float = Field(1.0, gt=0, description="spread floor, in objects")
    consecutive: int = Field(3, ge=1, description="windows in a row before an alert (K)")
    clear_windows: int = Field(2, ge=1, description="windows without the condition that end an episode")
    surge_z: float = Field(4.0, gt=0, description="z of persons that counts as a crowd surge")
    absence_z: float = Field(3.0, gt=0, description="negative z that counts as an unusual absence")
    # "Normally busy": unusual_absence only where the slot's mean is at least this.
    busy_min: float = Field(3.0, ge=0, description=(
        "unusual_absence only where the slot's mean is at least this (normally busy)"))
    jam_z: float = Field(3.0, gt=0, description="z of vehicles that counts as a traffic jam")
    # With a vehicle speed in the window (box heights/s), a jam also needs it below this.
    jam_max_speed: float = Field(0.3, ge=0, description=(
        "a jam also needs vehicles this slow (box heights per second) or no speed known"))
    severity_surge: Literal["info", "warning", "critical"] = Field(WARNING, description="crowd_surge alerts")
    severity_absence: Literal["info", "warning", "critical"] = Field(INFO, description="unusual_absence alerts")
    severity_jam: Literal["info", "warning", "critical"] = Field(WARNING, description="traffic_jam alerts")


class AnomalyStep(NamedTuple):
    state: dict[str, Any]
    alerts: list[dict[str, Any]]
    # {"aggregate": the input with anomaly_score set,
    #  "scores": {metric: {"value", "mean", "spread", "z", "n"}}, "slot": int, "learned": bool}
    extra: dict[str, Any]


def hour_of_week(time_ms: int, utc_offset_minutes: int = 420) -> int:
    """0..167: Monday 00h local is 0, Sunday 23h is 167."""
    local_hours = (int(time_ms) + utc_offset_minutes * 60_000) // HOUR_MS
    day = (local_hours // 24 + EPOCH_WEEKDAY) % 7
    return int(day * 24 + local_hours % 24)


def baseline_slot(time_ms: int, cfg: "AnomalyConfig") -> int:
    """The baseline slot of a window starting at ``time_ms``: its hour of the week or of the
    day, local time."""
    hour = hour_of_week(time_ms, cfg.utc_offset_minutes)
    return hour if cfg.slots == "hour_of_week" else hour % 24


def new_anomaly_state() -> dict[str, Any]:
    """``slots``: {slot: {metric: [n, mean, var]}} (sparse: slots seen so far);
    ``episodes``: {"crowd_surge"|"unusual_absence:persons"|...: {"streak", "active", "quiet",
    "start_ms"}}; ``last_end_ms``: end of the last window learned."""
    return {"version": STATE_VERSION, "slots": {}, "episodes": {}, "last_end_ms": None}


def window_metrics(window: Mapping[str, Any], statistic: str) -> dict[str, float]:
    """persons and vehicles in a window by the configured statistic."""
    if statistic == "mean":
        source = window.get("mean_by_class", {})
    elif statistic == "max":
        source = window.get("counts_by_class", {})
    else:
        source = window.get("unique_tracks_by_class", {})
    persons = float(source.get("person", 0.0))
    vehicles = float(sum(v for k, v in source.items() if k in VEHICLE_CLASSES))
    return {"persons": persons, "vehicles": vehicles}


class WindowAnomaly:
    """Baseline learning, scoring and episode alerts for one key (camera or camera+zone)."""

    def __init__(self, config: AnomalyConfig = AnomalyConfig()) -> None:
        self.config = config

    def _spread(self, var: float) -> float:
        return math.sqrt(max(var, 0.0) + self.config.min_spread ** 2)

    def _learn(self, stats: list[float], value: float) -> list[float]:
        n, mean, var = stats
        cfg = self.config
        if n >= cfg.warmup_windows:
            bound = cfg.winsor_z * self._spread(var)
            value = min(max(value, mean - bound), mean + bound)
        n += 1
        rate = max(1.0 / n, cfg.alpha)
        delta = value - mean
        mean += rate * delta
        # EW variance (West 1979 / Finch 2009): exact population variance while rate == 1/n.
        var = (1.0 - rate) * (var + rate * delta * delta)
        return [n, mean, var]

    def step(self, state: dict[str, Any] | None, window: Mapping[str, Any]) -> AnomalyStep:
        cfg = self.config
        state = state or new_anomaly_state()
        camera_id = str(window["camera_id"])
        zone_id = window.get("zone_id")
        start_ms, end_ms = int(window["window_start_ms"]), int(window["window_end_ms"])
        slot = baseline_slot(start_ms, cfg)
        metrics = window_metrics(window, cfg.statistic)
        slot_stats = state["slots"].get(slot, {})

        scores: dict[str, dict[str, Any]] = {}
        for name, value in metrics.items():
            n, mean, var = slot_stats.get(name, [0, 0.0, 0.0])
            z = None
            if n >= cfg.warmup_windows:
                z = (value - mean) / self._spread(var)
            scores[name] = {"value": value, "mean": mean, "spread": self._spread(var),
                            "z": z, "n": int(n)}
        scored = [s["z"] for s in scores.values() if s["z"] is not None]
        anomaly_score = max(scored, key=abs) if scored else None
        aggregate = {**dict(window), "anomaly_score": anomaly_score}

        last_end = state["last_end_ms"]
        if last_end is not None and end_ms <= last_end:
            # A duplicate or out-of-order window: scored, but neither learned nor counted, so a
            # replay without restored state cannot double-count it.
            return AnomalyStep(state, [], {"aggregate": aggregate, "scores": scores,
                                           "slot": slot, "learned": False})

        speed = window.get("mean_speed_by_class", {})
        vehicle_speeds = [float(v) for k, v in speed.items() if k in VEHICLE_CLASSES]
        vehicle_speed = min(vehicle_speeds) if vehicle_speeds else None

        def z_of(metric: str) -> float | None:
            return scores[metric]["z"]

        persons_z, vehicles_z = z_of("persons"), z_of("vehicles")
        conditions = {
            "crowd_surge": persons_z is not None and persons_z >= cfg.surge_z,
            "unusual_absence:persons": persons_z is not None and persons_z <= -cfg.absence_z
            and scores["persons"]["mean"] >= cfg.busy_min,
            "unusual_absence:vehicles": vehicles_z is not None and vehicles_z <= -cfg.absence_z
            and scores["vehicles"]["mean"] >= cfg.busy_min,
            "traffic_jam": vehicles_z is not None and vehicles_z >= cfg.jam_z
            and (vehicle_speed is None or vehicle_speed <= cfg.jam_max_speed),
        }
        contiguous = last_end is None or start_ms <= last_end
        episodes = {k: dict(v) for k, v in state["episodes"].items()}
        alerts = []
        for key, holds in conditions.items():
            episode = episodes.get(key) or {"streak": 0, "active": False, "quiet": 0, "start_ms": None}
            if not contiguous:
                episode.update(streak=0, start_ms=None)
            if holds:
                if episode["streak"] == 0:
                    episode["start_ms"] = start_ms
                episode["streak"] += 1
                episode["quiet"] = 0
                if not episode["active"] and episode["streak"] >= cfg.consecutive:
                    episode["active"] = True
                    alerts.append(self._alert(key, camera_id, zone_id, end_ms, episode, scores,
                                              window, vehicle_speed))
            else:
                episode["streak"], episode["start_ms"] = 0, None
                episode["quiet"] += 1
                if episode["active"] and episode["quiet"] >= cfg.clear_windows:
                    episode["active"] = False
            if episode["streak"] or episode["active"]:
                episodes[key] = episode
            else:
                episodes.pop(key, None)  # idle episodes cost no state

        slots = dict(state["slots"])
        slots[slot] = {name: self._learn(list(slot_stats.get(name, [0, 0.0, 0.0])), value)
                       for name, value in metrics.items()}
        new = {"version": STATE_VERSION, "slots": slots, "episodes": episodes,
               "last_end_ms": end_ms}
        return AnomalyStep(new, alerts, {"aggregate": aggregate, "scores": scores, "slot": slot,
                                         "learned": True})

    def _alert(self, key, camera_id, zone_id, end_ms, episode, scores, window,
               vehicle_speed) -> dict[str, Any]:
        cfg = self.config
        alert_type, _, metric = key.partition(":")
        metric = metric or ("persons" if alert_type == "crowd_surge" else "vehicles")
        subject = "person" if metric == "persons" else "vehicle"
        threshold, severity = {
            "crowd_surge": (cfg.surge_z, cfg.severity_surge),
            "unusual_absence": (cfg.absence_z, cfg.severity_absence),
            "traffic_jam": (cfg.jam_z, cfg.severity_jam),
        }[alert_type]
        score = scores[metric]
        evidence = {
            "rule": alert_type, "metric": metric, "statistic": cfg.statistic,
            "zone_id": zone_id, "episode_start_ms": episode["start_ms"],
            "window_start_ms": int(window["window_start_ms"]), "window_end_ms": end_ms,
            "value": round(score["value"], 4), "baseline_mean": round(score["mean"], 4),
            "baseline_spread": round(score["spread"], 4), "baseline_windows": score["n"],
            "z": round(score["z"], 4), "z_threshold": threshold,
            "consecutive_windows": episode["streak"],
            "hour_of_week": hour_of_week(int(window["window_start_ms"]), cfg.utc_offset_minutes),
        }
        if alert_type == "traffic_jam":
            evidence.update(vehicle_speed=vehicle_speed, jam_max_speed=cfg.jam_max_speed)
        hashed_subject = json.dumps([subject, zone_id], ensure_ascii=False)
        return alert_record(alert_type, severity, camera_id, end_ms, subject, abs(score["z"]),
                            id_key=hashed_subject, bucket_ms=episode["start_ms"], evidence=evidence)


# ------------------------------------------------------------------------------- liveness

class LivenessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    offline_after_ms: int = Field(120_000, ge=1_000, description="silence that makes a camera offline")
    severity_offline: Literal["info", "warning", "critical"] = Field(WARNING, description="camera_offline alerts")
    severity_recovered: Literal["info", "warning", "critical"] = Field(INFO, description="camera_recovered alerts")


class LivenessStep(NamedTuple):
    state: dict[str, Any]
    alerts: list[dict[str, Any]]
    # {"next_check_ms": when to call again if no frame arrives (register a timer), or None}
    extra: dict[str, Any]


class CameraLiveness:
    """Offline / recovered alerts for one camera, from frame event times and a clock.

    Call ``step`` on each frame (``last_frame_ms`` = its event time) and from a timer with the
    current watermark or processing time as ``now_ms``. State:
    ``{"last_frame_ms": int | None, "offline_since_ms": int | None}``, where
    ``offline_since_ms`` is the last frame before the silence while the camera is offline.

    The offline alert's ``time_ms`` is ``last_frame_ms + offline_after_ms``, the event time the
    silence became an outage, not the clock reading: a replay computes the same alert.
    """

    def __init__(self, config: LivenessConfig = LivenessConfig()) -> None:
        self.config = config

    @staticmethod
    def new_state() -> dict[str, Any]:
        return {"last_frame_ms": None, "offline_since_ms": None}

    def _alert(self, alert_type, severity, camera_id, time_ms, bucket_ms, evidence):
        return alert_record(alert_type, severity, camera_id, time_ms, "camera", 0.0,
                            bucket_ms=bucket_ms, evidence=evidence)

    def step(self, state: dict[str, Any] | None, camera_id: str, last_frame_ms: int | None,
             now_ms: int) -> LivenessStep:
        cfg = self.config
        state = dict(state or self.new_state())
        alerts = []
        if last_frame_ms is not None and (state["last_frame_ms"] is None
                                          or last_frame_ms > state["last_frame_ms"]):
            if state["offline_since_ms"] is not None:
                silent = int(last_frame_ms) - state["offline_since_ms"]
                alerts.append(self._alert(
                    "camera_recovered", cfg.severity_recovered, camera_id, last_frame_ms,
                    state["offline_since_ms"],
                    {"rule": "camera_recovered", "last_frame_before_ms": state["offline_since_ms"],
                     "first_frame_after_ms": int(last_frame_ms), "silent_ms": silent,
                     "offline_after_ms": cfg.offline_after_ms}))
                state["offline_since_ms"] = None
            state["last_frame_ms"] = int(last_frame_ms)
        last = state["last_frame_ms"]
        if last is None:
            return LivenessStep(state, alerts, {"next_check_ms": None})
        deadline = last + cfg.offline_after_ms
        if state["offline_since_ms"] is None and now_ms >= deadline:
            state["offline_since_ms"] = last
            alerts.append(self._alert(
                "camera_offline", cfg.severity_offline, camera_id, deadline, last,
                {"rule": "camera_offline", "last_frame_ms": last, "checked_at_ms": int(now_ms),
                 "silent_ms": int(now_ms) - last, "offline_after_ms": cfg.offline_after_ms}))
        next_check = None if state["offline_since_ms"] is not None else deadline
        return LivenessStep(state, alerts, {"next_check_ms": next_check})
