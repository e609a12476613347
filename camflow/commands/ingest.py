"""``camflow ingest``: sample a camera or a video into the frames topic."""
from __future__ import annotations

import json
import sys

from camflow.commands.common import _config, serve_metrics, progress_wanted


def cmd_ingest(args) -> int:
    from camflow.config import Camera
    from camflow.core.frame_store import configured_store
    from camflow.services.sampler import SourceError, ingest
    config = _config(args)
    # A camera the config lacks samples with the camera defaults (one place: config.Camera).
    camera = config.camera(args.camera) or Camera(id=args.camera)
    fps = args.fps or camera.fps
    source = args.source or camera.source
    if not source:
        raise SystemExit(f"camflow ingest: no --source and camera {args.camera!r} has none configured")
    max_width = args.max_width or camera.max_width
    serve_metrics(args.metrics_port)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise SystemExit(f"camflow ingest: --max-in-flight must be at least 1, not {args.max_in_flight}")
    try:
        report = ingest(config.kafka, args.camera, source, fps, max_width=max_width,
                        max_frames=args.max_frames, realtime=args.realtime,
                        progress=progress_wanted(args),
                        policy=args.policy or camera.sampler_policy,
                        max_in_flight=args.max_in_flight or camera.sampler_max_in_flight,
                        frame_store=configured_store(config),
                        rtsp_transport=args.rtsp_transport or camera.rtsp_transport)
    except SourceError as exc:
        print(f"camflow ingest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"camera": report.camera_id, "frames": report.frames, "bytes": report.bytes,
                      "seconds": round(report.seconds, 2), "policy": report.policy,
                      "dropped": report.dropped}))
    return 0


def register(sub) -> None:
    p = sub.add_parser("ingest", help="sample a camera or video and publish FrameSamples")
    p.add_argument("--camera", required=True, help="camera id (the Kafka key)")
    p.add_argument("--source", help="rtsp://, http(s):// URL or a video file (default: the camera's configured source)")
    p.add_argument("--fps", type=float, help="samples per second (default: the camera's fps)")
    p.add_argument("--max-width", type=int)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--realtime", action="store_true", help="pace file replay at the video's speed")
    p.add_argument("--policy", choices=["keep-all", "latest-only"],
                   help="when the broker falls behind: keep-all waits (never drops), latest-only "
                        "drops older unsent frames (default: the camera's sampler_policy, else keep-all)")
    p.add_argument("--max-in-flight", type=int, metavar="N",
                   help="unacknowledged frames before the policy applies (default: the camera's "
                        "sampler_max_in_flight, else 100)")
    p.add_argument("--rtsp-transport", choices=["tcp", "udp"],
                   help="what an rtsp:// source asks the server for (default: the camera's "
                        "rtsp_transport, else tcp; a server that only speaks UDP needs udp)")
    p.add_argument("--config")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)
