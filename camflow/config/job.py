"""The streaming job: its runtime settings, and the perception and rule settings it runs
with. Each perception domain owns its settings model (``transforms/``); this composes them."""
from __future__ import annotations

from pydantic import Field, model_validator

from camflow.config.base import Strict
from camflow.transforms.anomaly import AnomalyConfig, LivenessConfig
from camflow.transforms.appearance import AppearanceConfig
from camflow.transforms.detect import DetectorConfig
from camflow.transforms.frames import FrameLimits
from camflow.transforms.motion import MotionGateConfig
from camflow.transforms.recognition import RecognitionPolicy
from camflow.transforms.tracking import TrackerConfig
from camflow.transforms.watchlist import MatchingConfig


class Job(Strict):
    parallelism: int = Field(1, ge=1, description="parallel instances of each operator (at most the frames topic's partitions)")
    checkpoint_interval_ms: int = Field(10_000, ge=500, description="how often the job checkpoints its state")
    python_bundle_ms: int = Field(100, ge=1, description=(
        "PyFlink flushes a Python operator's batch after this long (Flink's default, 1000 ms, "
        "adds about a second of latency per Python stage)"))
    python_bundle_size: int = Field(100, ge=1, description="...or after this many records")
    checkpoint_dir: str | None = Field(None, description="file:// or s3:// URI for retained checkpoints")
    window_ms: int = Field(60_000, ge=1000, description="tumbling window: counts, crowd rule, anomaly score")
    sliding_window_ms: int = Field(300_000, ge=0, description=(
        "sliding window (sliding by window_ms) for smoother counts; 0 turns it off"))
    out_of_orderness_ms: int = Field(5_000, ge=0, description="how late a frame may arrive behind later ones (watermark lag)")
    idleness_ms: int = Field(10_000, ge=100, description="a silent partition stops holding back the watermark after this")
    allowed_lateness_ms: int = Field(0, ge=0, description="a closed window still takes frames this late (and is emitted again)")
    default_crowd_limit: int | None = Field(None, ge=1, description="crowd_limit of cameras without one (None: no crowd rule)")
    detector: DetectorConfig = DetectorConfig()
    # The detector runs only on frames that changed since it last ran (transforms/motion.py).
    motion_gate: MotionGateConfig = MotionGateConfig()
    tracking: TrackerConfig = TrackerConfig()
    recognition: RecognitionPolicy = RecognitionPolicy()
    appearance: AppearanceConfig = AppearanceConfig()
    watchlist: MatchingConfig = MatchingConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    liveness: LivenessConfig = LivenessConfig()
    limits: FrameLimits = FrameLimits()
    reject_unknown_cameras: bool = Field(True, description="frames from cameras not in the config go to dead-letters")
    flink_options: dict[str, str] = Field(default_factory=dict, description=(
        "extra Flink options for the job, e.g. {'rest.port': '8082'} to serve the embedded "
        "mini-cluster's REST API (metrics) on a fixed port, or a metrics reporter"))
    rest_url: str | None = Field("http://localhost:8081", description=(
        "Flink REST API that `camflow status` asks for job health (None: do not ask)"))

    @model_validator(mode="after")
    def _future_skew_within_out_of_orderness(self) -> "Job":
        """A frame stamped ahead of the clock moves its partition's watermark ahead by as much:
        beyond the out-of-orderness, the other cameras' frames become late for their windows.
        Unset, the skew allowed is the smaller of its default and the out-of-orderness."""
        skew, lag = self.limits.max_future_skew_ms, self.out_of_orderness_ms
        if skew > lag:
            if "max_future_skew_ms" in self.limits.model_fields_set:
                raise ValueError(f"limits.max_future_skew_ms ({skew}) must not exceed "
                                 f"out_of_orderness_ms ({lag})")
            self.limits = self.limits.model_copy(update={"max_future_skew_ms": lag})
        return self

