"""FAISS watchlist search: throughput and recall@1 of the index kinds ``FaceIndex`` uses.

    python -m bench.faiss [--sizes 10000 100000 1000000] [--seconds 2] [--threads 2]
    (or: python bench/faiss.py)

Data: synthetic 128-D L2-normalised embeddings with the structure of a face watchlist,
not uniform noise: 256 "population" centres, identities scattered around them, 4 photos per
identity scattered around each identity.  Queries are new photos of enrolled identities
(identity + fresh noise), so the exact nearest neighbour is meaningful and recall@1 tests
whether the approximate index finds it.

Indexes (built by ``transforms.watchlist.new_faiss_index`` / ``tune_search``, as the job does):
  flat  IndexIDMap2(IndexFlatIP): exact search, the BASELINE (recall 1 by definition)
  ivf   IVF{4 sqrt n},Flat, nprobe tuned to recall@1 >= 0.99 on perturbed enrolled vectors
  hnsw  IDMap2(HNSW32,Flat), efSearch tuned the same way (sizes <= --hnsw-max: slow to build)
On GPU (faiss.get_num_gpus() > 0) flat and ivf are also searched on index_cpu_to_all_gpus.

For each: build seconds, queries/s at batch 1 and batch 64 (each measured for at most
--seconds), recall@1 against exact search; ratios are vs the flat index on the same device
at the same batch size.  The LAST line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # python bench/faiss.py: make the repo importable, and don't
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # shadow the faiss package

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared cores: no OpenMP spin-waiting
import faiss  # noqa: E402

from camflow.transforms.watchlist import (  # noqa: E402
    DIM, ivf_nlist, new_faiss_index, recall_at_1, tune_search,
)

PHOTOS_PER_ID = 4


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(database [n, 128], queries [n_queries, 128]), both L2-normalised, clustered.

    Same-population identities have cosine ~0.5, photos of one identity ~0.8.  The first
    half of the queries are new photos of enrolled identities, the second half photos of
    strangers (new identities from the same populations), whose nearest neighbour is a
    look-alike and much harder for an approximate index to find.
    """
    rng = np.random.default_rng(seed)
    pops = _normalise(rng.standard_normal((256, DIM), dtype=np.float32))
    n_ids = math.ceil(n / PHOTOS_PER_ID)
    ids = np.empty((n_ids, DIM), np.float32)
    for s in range(0, n_ids, 65536):
        e = min(n_ids, s + 65536)
        c = pops[rng.integers(0, len(pops), e - s)]
        ids[s:e] = _normalise(c + rng.standard_normal((e - s, DIM), dtype=np.float32) * (1.0 / math.sqrt(DIM)))
    db = np.empty((n, DIM), np.float32)
    for s in range(0, n, 262144):
        e = min(n, s + 262144)
        owner = np.arange(s, e) // PHOTOS_PER_ID
        db[s:e] = _normalise(ids[owner] + rng.standard_normal((e - s, DIM), dtype=np.float32) * (0.5 / math.sqrt(DIM)))
    enrolled = ids[rng.integers(0, n_ids, n_queries - n_queries // 2)]
    c = pops[rng.integers(0, len(pops), n_queries // 2)]
    strangers = _normalise(c + rng.standard_normal(c.shape, dtype=np.float32) * (1.0 / math.sqrt(DIM)))
    who = np.concatenate([enrolled, strangers])
    queries = _normalise(who + rng.standard_normal((n_queries, DIM), dtype=np.float32) * (0.5 / math.sqrt(DIM)))
    # interleave so that every batch (and a time-capped prefix) holds both kinds
    order = np.argsort(np.r_[np.arange(len(enrolled)) * 2, np.arange(len(strangers)) * 2 + 1], kind="stable")
    return db, queries[order]


def qps(index, queries: np.ndarray, batch: int, seconds: float) -> tuple[float, int]:
    """Queries per second searching ``queries`` ``batch`` at a time (stops after ``seconds``)."""
    index.search(queries[:batch], 1)  # warm-up
    done, t0 = 0, time.perf_counter()
    for s in range(0, len(queries) - batch + 1, batch):
        index.search(queries[s:s + batch], 1)
        done += batch
        if time.perf_counter() - t0 > seconds:
            break
    return done / (time.perf_counter() - t0), done


def measure(name: str, index, queries: np.ndarray, exact: np.ndarray, seconds: float,
            batches=(1, 64)) -> dict:
    row = {"recall_at_1": round(recall_at_1(index, queries, exact), 4),
           "recall_at_1_enrolled": round(recall_at_1(index, queries[0::2], exact[0::2]), 4),
           "recall_at_1_strangers": round(recall_at_1(index, queries[1::2], exact[1::2]), 4)}
    for b in batches:
        rate, done = qps(index, queries, b, seconds)
        row[f"qps_b{b}"] = round(rate, 1)
        row[f"queries_b{b}"] = done
    return row


def bench_size(n: int, n_queries: int, seconds: float, hnsw_max: int, gpu: bool,
               target_recall: float, threads: int, build_threads: int) -> dict:
    faiss.omp_set_num_threads(build_threads)
    t0 = time.perf_counter()
    db, queries = synthetic(n, n_queries, seed=n)
    ids = np.arange(n, dtype=np.int64)
    out: dict = {"n": n, "queries": n_queries, "data_s": round(time.perf_counter() - t0, 2),
                 "cpu": {}, "gpu": {}}

    t = time.perf_counter()
    flat = new_faiss_index("flat")
    flat.add_with_ids(db, ids)
    build_flat = time.perf_counter() - t
    t = time.perf_counter()
    exact, _ = flat.search(queries, 1)
    exact = exact[:, 0]
    out["exact_all_queries_s"] = round(time.perf_counter() - t, 3)

    indexes = {"flat": (flat, build_flat, {})}
    t = time.perf_counter()
    ivf = new_faiss_index("ivf", train=db, seed=0)
    ivf.add_with_ids(db, ids)
    build = time.perf_counter() - t
    t = time.perf_counter()
    nprobe, tuned = tune_search(ivf, "ivf", db, target_recall)
    indexes["ivf"] = (ivf, build, {"nlist": ivf_nlist(n), "nprobe": nprobe,
                                   "tune_recall": round(tuned, 4),
                                   "tune_s": round(time.perf_counter() - t, 2)})
    if n <= hnsw_max:
        t = time.perf_counter()
        hnsw = new_faiss_index("hnsw")
        hnsw.add_with_ids(db, ids)
        build = time.perf_counter() - t
        t = time.perf_counter()
        ef, tuned = tune_search(hnsw, "hnsw", db, target_recall)
        indexes["hnsw"] = (hnsw, build, {"M": 32, "efConstruction": 80, "efSearch": ef,
                                         "tune_recall": round(tuned, 4),
                                         "tune_s": round(time.perf_counter() - t, 2)})
    else:
        out["hnsw_skipped"] = f"n > --hnsw-max {hnsw_max} (build too slow for this bench)"

    faiss.omp_set_num_threads(threads)
    for name, (index, build_s, params) in indexes.items():
        row = {"build_s": round(build_s, 2), **params,
               **measure(name, index, queries, exact, seconds)}
        out["cpu"][name] = row
        print(f"  n={n:>8} cpu {name:5} build {build_s:7.2f}s  recall@1 {row['recall_at_1']:.4f} "
              f"(enrolled {row['recall_at_1_enrolled']:.4f}, strangers {row['recall_at_1_strangers']:.4f})  "
              f"qps b1 {row['qps_b1']:>9.1f}  b64 {row['qps_b64']:>9.1f}  {params}", flush=True)
    if gpu:
        for name in ("flat", "ivf"):
            g = faiss.index_cpu_to_all_gpus(indexes[name][0])
            row = measure(name, g, queries, exact, seconds)
            out["gpu"][name] = row
            print(f"  n={n:>8} gpu {name:5} recall@1 {row['recall_at_1']:.4f} "
              f"(enrolled {row['recall_at_1_enrolled']:.4f}, strangers {row['recall_at_1_strangers']:.4f})  "
                  f"qps b1 {row['qps_b1']:>9.1f}  b64 {row['qps_b64']:>9.1f}", flush=True)
    for dev in ("cpu", "gpu"):
        base = out[dev].get("flat")
        for name, row in out[dev].items():
            for b in (1, 64):
                row[f"ratio_qps_b{b}_vs_flat"] = round(row[f"qps_b{b}"] / base[f"qps_b{b}"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000, help="queries per size (<=100k)")
    ap.add_argument("--queries-1m", type=int, default=256, help="queries at sizes > 100k")
    ap.add_argument("--seconds", type=float, default=2.0, help="time cap per qps measurement")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenMP threads while searching (1: one Flink slot; the cores are shared)")
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--hnsw-max", type=int, default=100_000)
    ap.add_argument("--target-recall", type=float, default=0.99)
    args = ap.parse_args(argv)

    gpus = faiss.get_num_gpus()
    started = time.perf_counter()
    print(f"faiss {faiss.__version__}, {args.threads} OpenMP threads, {gpus} GPU(s), "
          f"{platform.processor() or platform.machine()}", flush=True)
    results = []
    for n in args.sizes:
        nq = args.queries if n <= 100_000 else args.queries_1m
        results.append(bench_size(n, nq, args.seconds, args.hnsw_max, gpus > 0, args.target_recall,
                                  args.threads, args.build_threads))
    summary = {
        "bench": "faiss",
        "faiss": faiss.__version__,
        "search_threads": args.threads,
        "build_threads": args.build_threads,
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "baseline": "flat (IndexIDMap2(IndexFlatIP), exact) on the same device and batch size",
        "data": f"clustered synthetic: 256 populations, {PHOTOS_PER_ID} photos/identity, 128-D unit",
        "target_recall": args.target_recall,
        "seconds_per_measurement": args.seconds,
        "total_s": round(time.perf_counter() - started, 1),
        "sizes": results,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
