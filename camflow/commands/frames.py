"""``camflow frames``: the claim-check frame store."""
from __future__ import annotations

import json

from camflow.commands.common import _config


def cmd_frames_prune(args) -> int:
    """A file frame store's retention: frames older than ``frame_store.retention_minutes``
    go, and alert snapshots and clips older than ``evidence.retention_days`` (S3 stores use a
    bucket lifecycle rule instead)."""
    import time

    from camflow.core.evidence_store import configured_evidence
    from camflow.core.frame_store import FileFrameStore, configured_store
    config = _config(args)
    store, evidence = configured_store(config), configured_evidence(config)
    file_evidence = evidence is not None and isinstance(evidence.backend, FileFrameStore)
    if not isinstance(store, FileFrameStore) and not file_evidence:
        raise SystemExit("camflow frames prune: needs frame_store.url or evidence.url "
                         "file:///... in the config (an S3 store expires objects with a bucket "
                         "lifecycle rule)")
    while True:
        if isinstance(store, FileFrameStore):
            retention_ms = int(config.frame_store.retention_minutes * 60_000)
            removed = store.prune(int(time.time() * 1000) - retention_ms)
            print(json.dumps({"store": store.url, "removed": removed}), flush=True)
        if file_evidence:
            removed = evidence.prune(config.evidence.retention_days)
            print(json.dumps({"store": evidence.url, "removed": removed}), flush=True)
        if not args.every:
            return 0
        time.sleep(args.every)


def register(sub) -> None:
    frames = sub.add_parser("frames", help="the claim-check frame store").add_subparsers(
        dest="action", required=True)
    p = frames.add_parser("prune", help="delete frames past frame_store.retention_minutes and "
                           "alert evidence past evidence.retention_days")
    p.add_argument("--config")
    p.add_argument("--every", type=float, help="keep pruning every this many seconds")
    p.set_defaults(func=cmd_frames_prune)
