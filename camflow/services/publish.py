"""Publish images as FrameSample records with acknowledgements awaited: for tools that feed the
job known frames (`camflow eval watchlist`, the tests' still-camera fixture), not for cameras
(`camflow ingest` is the sampler, with reconnects and an overload policy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from camflow.config import Config


class FramePublisher:
    def __init__(self, config: Config, sampler_id: str, jpeg_quality: int = 90):
        from camflow.core.kafka import reliable_producer
        from camflow.schemas.codec import AvroCodec
        self.topic = config.kafka.topics.frames
        self.codec = AvroCodec("FrameSample", config.kafka.registry_conf(), subject=f"{self.topic}-value")
        self.producer = reliable_producer(config.kafka)
        self.sampler_id, self.jpeg_quality = sampler_id, jpeg_quality

    @staticmethod
    def load(image: np.ndarray | str | Path, max_width: int = 960) -> np.ndarray:
        if hasattr(image, "shape"):
            return image
        import cv2

        from camflow.transforms.frames import resize_to_max_width
        loaded = cv2.imread(str(image))
        if loaded is None:
            raise ValueError(f"{image}: not a readable image")
        return resize_to_max_width(loaded, max_width)

    def publish(self, camera_id: str, image: np.ndarray, captures: list[tuple[int, int]],
                jpeg: bytes | None = None) -> None:
        """The same image as frames ``(sequence, capture_ms)``; returns once all are acked."""
        from camflow.core.kafka import DeliveryTracker, produce_reliably
        from camflow.transforms.frames import encode_jpeg
        jpeg = jpeg if jpeg is not None else encode_jpeg(image, self.jpeg_quality)
        tracker = DeliveryTracker()
        for sequence, capture_ms in captures:
            value = self.codec.encode({"camera_id": camera_id, "capture_ms": capture_ms,
                                       "sequence": sequence, "jpeg": jpeg, "jpeg_ref": None,
                                       "width": image.shape[1], "height": image.shape[0],
                                       "sampler_id": self.sampler_id})
            produce_reliably(self.producer, self.topic, value, camera_id.encode(), capture_ms, tracker)
        self.producer.flush(30)
        if tracker.delivered != len(captures):
            raise RuntimeError(f"{len(captures) - tracker.delivered} frame(s) of {camera_id} not "
                               f"acknowledged by the broker: {tracker.failed}")
