"""Finding a person again by appearance, on a real video with MOT ground truth (``camflow eval reid``).

    camflow eval reid --video ../shared/data/video/vtest.avi \\
        --gt ../shared/data/tracking/PETS09-S2L1-gt.txt [--fps 4] [--frames N]

The video is sampled as the sampler samples a file (``camflow.evaluation.track.sample_video``).
Each ground-truth person's crops (their truth boxes, at least ``--min-height`` pixels tall, so
that the appearance cues are judged, not the detector) are split at the middle of their time in
view: every crop of the first half is a **query**; the second half is that person's **track**
in the gallery, described as a stored appearance record describes a track (the mean of its
crops' vectors). Each query ranks every person's track; rank-1 is the share of queries whose
own track comes first, and, with one true track per query, mAP is the mean reciprocal rank.

Cues (``camflow.transforms.appearance``): colour stripes alone, the MobileNetV2 embedding
alone, and their mix (``similarity``, the weight of colour ``--colour-weight``). Prints one
line per cue and, last, one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

MIN_CROPS = 4  # a person seen fewer times has no query or no track to find


def collect_crops(video: str | Path, gt_path: str | Path, fps: float, min_height: float,
                  embedder, max_frames: int | None = None) -> dict[str, Any]:
    """``{"ids", "times", "colour", "embedding", "colour_ms", "embedding_ms"}`` of every truth
    crop tall enough: rows in time order."""
    from camflow.evaluation.track import load_mot_ground_truth, sample_video
    from camflow.transforms.appearance import colour_vectors

    gt = load_mot_ground_truth(gt_path)
    ids, times, colours, embeddings = [], [], [], []
    colour_s = embedding_s = 0.0
    for sample in sample_video(video, fps, max_frames=max_frames):
        if sample.index not in gt:
            continue
        truth_ids, boxes = gt[sample.index]
        boxes = boxes * sample.scale
        tall = (boxes[:, 3] - boxes[:, 1]) >= min_height
        if not tall.any():
            continue
        truth_ids, boxes = truth_ids[tall], boxes[tall]
        t0 = time.perf_counter()
        colour = colour_vectors(sample.image, boxes)
        t1 = time.perf_counter()
        embedding = embedder(sample.image, boxes)
        t2 = time.perf_counter()
        colour_s, embedding_s = colour_s + t1 - t0, embedding_s + t2 - t1
        usable = colour.any(axis=1) & embedding.any(axis=1)
        ids += truth_ids[usable].tolist()
        times += [sample.capture_ms] * int(usable.sum())
        colours.append(colour[usable])
        embeddings.append(embedding[usable])
    crops = len(ids)
    return {"ids": np.asarray(ids, np.int64), "times": np.asarray(times, np.int64),
            "colour": np.concatenate(colours) if colours else np.zeros((0, 1), np.float32),
            "embedding": np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32),
            "colour_ms": round(colour_s * 1000 / max(crops, 1), 3),
            "embedding_ms": round(embedding_s * 1000 / max(crops, 1), 3)}


def split_queries_and_tracks(ids: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(row indices of the queries, {person: row indices of their gallery track}): each
    person's first half of crops are queries, the second half their track."""
    queries, tracks = [], {}
    for person in np.unique(ids):
        rows = np.flatnonzero(ids == person)  # rows are in time order
        if len(rows) < MIN_CROPS:
            continue
        half = len(rows) // 2
        queries.append(rows[:half])
        tracks[int(person)] = rows[half:]
    return (np.concatenate(queries) if queries else np.zeros(0, int)), tracks


def rank_scores(similarity: np.ndarray, query_ids: np.ndarray, track_ids: np.ndarray
                ) -> dict[str, float]:
    """rank-1 and mAP of queries ([Q, T] similarity to each track) with one true track each."""
    if not len(query_ids):
        return {"rank1": 0.0, "map": 0.0}
    true = similarity[np.arange(len(query_ids)), np.searchsorted(track_ids, query_ids)]
    ranks = 1 + (similarity > true[:, None]).sum(axis=1)
    return {"rank1": round(float((ranks == 1).mean()), 4),
            "map": round(float((1.0 / ranks).mean()), 4)}


def eval_reid(video: str | Path, gt_path: str | Path, fps: float = 4.0, min_height: float = 40.0,
              colour_weight: float | None = None, max_frames: int | None = None,
              embedder=None) -> dict[str, Any]:
    from camflow.transforms.appearance import COLOUR_WEIGHT, similarity, unit

    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    if embedder is None:
        from camflow.core.perception import appearance_embedder
        embedder = appearance_embedder(threads=0)
    weight = COLOUR_WEIGHT if colour_weight is None else colour_weight
    crops = collect_crops(video, gt_path, fps, min_height, embedder, max_frames)
    queries, tracks = split_queries_and_tracks(crops["ids"])
    track_ids = np.asarray(sorted(tracks), np.int64)
    track_colour = unit(np.stack([crops["colour"][tracks[t]].sum(0) for t in track_ids])) \
        if len(track_ids) else np.zeros((0, 1), np.float32)
    track_embedding = unit(np.stack([crops["embedding"][tracks[t]].sum(0) for t in track_ids])) \
        if len(track_ids) else np.zeros((0, 1), np.float32)
    query_ids = crops["ids"][queries]
    q_colour, q_embedding = crops["colour"][queries], crops["embedding"][queries]
    cues = {
        "colour": similarity(q_colour, None, track_colour, None),
        "embedding": similarity(q_colour, q_embedding, track_colour, track_embedding, 0.0),
        "combined": similarity(q_colour, q_embedding, track_colour, track_embedding, weight),
    }
    return {"video": video.name, "ground_truth": Path(gt_path).name, "fps": fps,
            "people": len(track_ids), "queries": int(len(queries)), "colour_weight": weight,
            "colour_ms_per_crop": crops["colour_ms"], "embedding_ms_per_crop": crops["embedding_ms"],
            **{cue: rank_scores(s, query_ids, track_ids) for cue, s in cues.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file to sample")
    parser.add_argument("--gt", required=True, help="MOTChallenge gt.txt of the same video")
    parser.add_argument("--fps", type=float, default=4.0, help="sampling rate (frames/s)")
    parser.add_argument("--min-height", type=float, default=40.0,
                        help="leave out truth boxes shorter than this (pixels)")
    parser.add_argument("--colour-weight", type=float,
                        help="weight of colour in the combined cue (default: the job's)")
    parser.add_argument("--frames", type=int, help="only the first N video frames")


def run(args: argparse.Namespace) -> int:
    result = eval_reid(args.video, args.gt, fps=args.fps, min_height=args.min_height,
                       colour_weight=args.colour_weight, max_frames=args.frames)
    for cue in ("colour", "embedding", "combined"):
        print(f"{cue:9s}: rank-1 {result[cue]['rank1']:.3f}  mAP {result[cue]['map']:.3f}")
    print(f"{result['people']} people, {result['queries']} queries; colour "
          f"{result['colour_ms_per_crop']:.2f} ms/crop, embedding "
          f"{result['embedding_ms_per_crop']:.2f} ms/crop")
    print(json.dumps(result, sort_keys=True))
    return 0
