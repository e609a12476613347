"""``camflow eval``: accuracy on labelled data, one subcommand per stage.

faces | plates | detect | watchlist print one JSON object; track, falls and reid print their own
table and end with one JSON line (``camflow.evaluation.track`` / ``.falls`` own their flags).
"""
from __future__ import annotations

import importlib
import json

from camflow.commands.common import _config

# Evaluations that own their arguments: ``add_arguments(parser)`` and ``run(args) -> int``.
OWN_ARGUMENTS = {"track": "camflow.evaluation.track", "falls": "camflow.evaluation.falls",
                 "reid": "camflow.evaluation.reid"}


def cmd_eval(args) -> int:
    if args.what in ("faces", "plates", "watchlist") and not (args.images and args.labels):
        raise SystemExit(f"camflow eval {args.what}: --images and --labels are required "
                         "(a folder of images and its labels CSV)")
    if args.what == "faces":
        from camflow.evaluation.perception import eval_faces
        result = eval_faces(args.images, args.labels)
    elif args.what == "plates":
        from camflow.evaluation.perception import eval_plates
        result = eval_plates(args.images, args.labels)
    elif args.what == "watchlist":
        from camflow.evaluation.watchlist import eval_watchlist
        result = eval_watchlist(args.images, args.labels, config=_config(args))
    else:
        from camflow.evaluation.detect import eval_detect
        result = eval_detect(args.video, every=args.every, config=_config(args))
    print(json.dumps(result))
    return 0


def register(sub) -> None:
    stages = sub.add_parser("eval", help="measure accuracy on labelled data").add_subparsers(
        dest="what", required=True)
    for what, help_text in (("faces", "face verification on labelled photos"),
                            ("plates", "plate finding and reading on labelled images"),
                            ("watchlist", "watchlist alerts through the real job")):
        p = stages.add_parser(what, help=help_text)
        p.add_argument("--images", help="folder of images")
        p.add_argument("--labels", help="its labels CSV")
        p.add_argument("--config")
        p.set_defaults(func=cmd_eval)
    p = stages.add_parser("detect", help="persons and vehicles per frame of a video")
    p.add_argument("--video", required=True)
    p.add_argument("--every", type=int, default=50, help="every Nth frame")
    p.add_argument("--config")
    p.set_defaults(func=cmd_eval)
    for what, module in OWN_ARGUMENTS.items():
        try:
            evaluation = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        p = stages.add_parser(what, help=(evaluation.__doc__ or what).strip().splitlines()[0])
        evaluation.add_arguments(p)
        p.set_defaults(func=evaluation.run)
