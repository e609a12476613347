"""``camflow zones``: draw a camera's scene."""
from __future__ import annotations

import sys

from camflow.commands.common import _config


def cmd_zones(args) -> int:
    from camflow.services.zones import draw
    try:
        path = draw(_config(args), args.camera, args.image, args.out)
    except ValueError as exc:  # the camera, its scene or the image is not usable: usage
        print(f"camflow zones: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def register(sub) -> None:
    zones = sub.add_parser("zones", help="check a camera's scene").add_subparsers(dest="action", required=True)
    p = zones.add_parser("draw", help="render the camera's zones and lines over a frame (PNG)")
    p.add_argument("--camera", required=True)
    p.add_argument("--image", required=True, help="a frame (image) or a video (its first frame)")
    p.add_argument("--out", help="PNG path (default: CAMERA-zones.png)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_zones)
