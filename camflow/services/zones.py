"""``camflow zones draw``: a camera's zones and lines over one of its frames, as a PNG."""
from __future__ import annotations

from pathlib import Path

import cv2

from camflow.transforms.scene import Scene, draw_scene

from camflow.config import Config


def frame_image(path: str) -> "cv2.Mat":
    """A still image, or a video's first frame."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        capture = cv2.VideoCapture(path)
        ok, image = capture.read()
        capture.release()
        if not ok:
            raise ValueError(f"{path}: neither an image nor a readable video")
    return image


def draw(config: Config, camera_id: str, image_path: str, out: str | None = None) -> Path:
    camera = config.camera(camera_id)
    if camera is None:
        raise ValueError(f"camera {camera_id!r} is not in the configuration")
    drawn = draw_scene(frame_image(image_path), camera.scene or Scene())
    target = Path(out or f"{camera_id}-zones.png")
    if not cv2.imwrite(str(target), drawn):
        raise ValueError(f"cannot write {target}")
    return target
