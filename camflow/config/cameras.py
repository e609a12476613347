"""A camera: where it is, how it is sampled, its scene, and what it overrides of the job's
perception settings (a night quay is not a market)."""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from camflow.config.base import Strict
from camflow.transforms.motion import MotionGateConfig
from camflow.transforms.recognition import RecognitionPolicy
from camflow.transforms.scene import Scene

CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Location(Strict):
    site: str = Field(description="Place name, e.g. 'Bai Vong port, arrivals hall'")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    kind: str | None = Field(None, description="port | airport | market | square | gateway | beach | ...")


class DetectorOverrides(Strict):
    """Per-camera detector thresholds (the model itself is one per job)."""

    score_threshold: float | None = Field(None, gt=0, lt=1, description=(
        "this camera's detection score threshold (default: job.detector's)"))


class Camera(Strict):
    id: str
    name: str = ""
    location: Location | None = None

    @property
    def site_name(self) -> str:
        """What people call where the camera is: its location's site, else its name, else its id."""
        return (self.location.site if self.location else "") or self.name or self.id
    source: str | None = Field(None, description="rtsp://, http(s):// or a video file path")
    fps: float = Field(1.0, gt=0, le=30)
    max_width: int = Field(960, ge=64, le=7680)
    crowd_limit: int | None = Field(None, ge=1, description="persons in one frame that raise crowd_limit")
    sampler_policy: Literal["keep-all", "latest-only"] = Field("keep-all", description=(
        "when the broker cannot keep up: keep-all waits and never drops a frame; latest-only "
        "drops older unsent frames and sends the newest (camflow/core/overload.py)"))
    sampler_max_in_flight: int = Field(100, ge=1, description=(
        "unacknowledged frames before the sampler_policy applies"))
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description=(
        "what an rtsp:// source asks the camera for: RTP over the RTSP connection (tcp) or over UDP"))
    scene: Scene | None = Field(None, description="zones and counting lines (normalised coordinates)")
    detector: DetectorOverrides | None = Field(None, description="overrides of job.detector")
    motion_gate: dict[str, Any] | None = Field(None, description=(
        "overrides of job.motion_gate's fields for this camera"))
    recognition: dict[str, Any] | None = Field(None, description=(
        "overrides of job.recognition's fields for this camera"))

    @field_validator("motion_gate")
    @classmethod
    def _motion_gate_fields(cls, value):
        if value is not None:
            MotionGateConfig(**value)  # unknown fields and out-of-bounds values fail here
        return value

    @field_validator("recognition")
    @classmethod
    def _recognition_fields(cls, value):
        if value is not None:
            RecognitionPolicy(**value)
        return value

    @field_validator("id")
    @classmethod
    def _id_format(cls, value: str) -> str:
        if not CAMERA_ID.match(value):
            raise ValueError("camera id must be 1-64 chars of a-z 0-9 _ . - (lower case)")
        return value
