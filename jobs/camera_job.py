r"""The camflow streaming job. Reads like its dataflow diagram:

    frames (Kafka) -> admit -> [dead-letters]
                        |
                  event time (capture_ms, bounded out-of-orderness, idleness)
                        |
                  key by camera -> analyse: decode JPEG, detect, track, read faces/plates,
                        |                   scene rules, camera liveness -> [alerts]
                        +--> analyses (Kafka)
                        +--> faces/plates -> match watchlist (broadcast) -> alerts, sightings,
                        |                                                   face-embeddings
                  summarise -> key by camera -> tumbling window -> anomaly score -> aggregates
                                  \-> sliding window ----------------------^
                                                      |                  \-> [alerts]
                                                      |-> crowd rule -> alerts (Kafka)
                                                      \-> [late -> dead-letters]

Run it with ``camflow job run`` (embedded mini-cluster), ``camflow job submit`` (a Flink
cluster), or ``flink run -py jobs/camera_job.py -pyexec .venv/bin/python -- --config FILE``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment

from camflow.config import Config, load_config
from camflow.jobs import operators as op
from camflow.jobs.kafka_io import BYTES, bytes_sink, frames_source, watchlist_source


# Sink records counted per value of a field as well (see ``op.EncodeRecords``).
COUNTED_BY = {"Alert": ("alerts", "type"), "DeadLetter": ("dead_letters", "reason")}


def encoder(contract: str, config: Config, topic: str, prepare=None) -> op.EncodeRecords:
    count_as, count_by = COUNTED_BY.get(contract, (None, None))
    return op.EncodeRecords(contract, config.kafka.registry_conf(), topic, count_as, count_by,
                            prepare)


def build_pipeline(env: StreamExecutionEnvironment, config: Config,
                   stop_offsets: dict[int, int] | None = None,
                   watchlist_stop_offsets: dict[int, int] | None = None) -> None:
    """``stop_offsets`` bound the frames read (``watchlist_stop_offsets`` the watchlist read;
    a bounded run without them runs without a watchlist)."""
    kafka, job, topics = config.kafka, config.job, config.kafka.topics

    raw = env.from_source(frames_source(kafka, stop_offsets), WatermarkStrategy.no_watermarks(),
                          "frames").uid("frames-source")
    admitted = raw.process(op.AdmitFrames(config)).name("admit")

    event_time = (WatermarkStrategy
                  .for_bounded_out_of_orderness(Duration.of_millis(job.out_of_orderness_ms))
                  .with_idleness(Duration.of_millis(job.idleness_ms))
                  .with_timestamp_assigner(op.CaptureTime()))
    analyses = (admitted
                .assign_timestamps_and_watermarks(event_time)
                .key_by(lambda frame: frame["camera_id"], key_type=Types.STRING())
                .process(op.AnalyseFrames(config)).name("analyse")
                .uid("analyse"))

    summaries = (analyses.map(op.summarise).name("summarise")
                 .key_by(lambda summary: summary["camera_id"], key_type=Types.STRING()))
    windows = (summaries
               .process(op.CountPerWindow(job.window_ms, job.window_ms, job.allowed_lateness_ms))
               .name("count-per-window").uid("count-per-camera-window"))
    scored = (windows
              .key_by(lambda window: window["camera_id"], key_type=Types.STRING())
              .process(op.ScoreWindows(config)).name("anomaly-score").uid("anomaly-score"))
    alerts = (scored.process(op.CrowdAlerts(config)).name("crowd-rule")
              .union(analyses.get_side_output(op.ALERTS), scored.get_side_output(op.ALERTS)))
    aggregates = scored
    if job.sliding_window_ms > job.window_ms:
        # Smoother counts for dashboards: e.g. 5-minute windows every minute, not scored.
        aggregates = aggregates.union(
            summaries.process(op.CountPerWindow(job.sliding_window_ms, job.window_ms,
                                                job.allowed_lateness_ms, report_late=False))
            .name("count-per-sliding-window").uid("count-per-camera-sliding-window"))

    # Watchlist: broadcast to every instance; only frames with faces or plates go to matching.
    # Every face read also goes to face-embeddings (retroactive search), matched or not.
    matching = job.watchlist.enabled and (job.recognition.faces or job.recognition.plates)
    keep_faces = job.watchlist.enabled and job.recognition.faces
    bounded = stop_offsets is not None
    face_embeddings = None
    if matching and (not bounded or watchlist_stop_offsets is not None):
        watchlist = (env.from_source(watchlist_source(kafka, watchlist_stop_offsets),
                                     WatermarkStrategy.no_watermarks(), "watchlist")
                     .uid("watchlist-source")
                     .process(op.DecodeWatchlist(config)).name("decode-watchlist"))
        watchlist_errors = [watchlist.get_side_output(op.DEAD_LETTERS)]
        matches = (analyses
                   .filter(lambda analysis: len(analysis.faces) > 0 or len(analysis.plates) > 0)
                   .key_by(lambda analysis: analysis.camera_id, key_type=Types.STRING())
                   .connect(watchlist.broadcast(op.WATCHLIST))
                   .process(op.MatchWatchlist(config)).name("match-watchlist").uid("match-watchlist"))
        alerts = alerts.union(matches)
        matches.get_side_output(op.SIGHTINGS) \
            .map(encoder("Sighting", config, topics.sightings), BYTES).name("encode-sightings") \
            .sink_to(bytes_sink(kafka, topics.sightings)).name("sightings").uid("sightings-sink")
        face_embeddings = matches.get_side_output(op.FACE_EMBEDDINGS)
    else:
        watchlist_errors = []
        if keep_faces:  # no watchlist in this run: every face is unmatched
            face_embeddings = (analyses.filter(lambda analysis: len(analysis.faces) > 0)
                               .flat_map(op.unmatched_faces).name("faces-unmatched"))
    if face_embeddings is not None:
        face_embeddings.map(encoder("FaceEmbedding", config, topics.face_embeddings), BYTES) \
            .name("encode-face-embeddings") \
            .sink_to(bytes_sink(kafka, topics.face_embeddings)).name("face-embeddings").uid("face-embeddings-sink")

    dead_letters = (admitted.get_side_output(op.DEAD_LETTERS)
                    .union(analyses.get_side_output(op.DEAD_LETTERS),
                           windows.get_side_output(op.LATE_FOR_WINDOW)
                           .process(op.LateFrames(topics.frames)),
                           *watchlist_errors))

    analyses.map(encoder("FrameAnalysis", config, topics.analyses, op.encode_analysis), BYTES) \
        .name("encode-analyses") \
        .sink_to(bytes_sink(kafka, topics.analyses)).name("analyses").uid("analyses-sink")
    aggregates.map(encoder("Aggregate", config, topics.aggregates), BYTES).name("encode-aggregates") \
        .sink_to(bytes_sink(kafka, topics.aggregates)).name("aggregates").uid("aggregates-sink")
    alerts.map(encoder("Alert", config, topics.alerts), BYTES).name("encode-alerts") \
        .sink_to(bytes_sink(kafka, topics.alerts)).name("alerts").uid("alerts-sink")
    dead_letters.map(encoder("DeadLetter", config, topics.dead_letters), BYTES).name("encode-dead-letters") \
        .sink_to(bytes_sink(kafka, topics.dead_letters)).name("dead-letters").uid("dead-letters-sink")


def latest_checkpoint(checkpoint_dir: str) -> str:
    """The newest retained checkpoint (``<dir>/<job id>/chk-N``) under a ``file://`` or plain
    path, for ``--from-checkpoint latest``."""
    root = Path(checkpoint_dir.removeprefix("file://"))
    found = sorted(root.glob("*/chk-*/_metadata"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no retained checkpoint under {checkpoint_dir}")
    return found[-1].parent.as_uri()


def resolve_checkpoint(config: Config, from_checkpoint: str | None) -> str | None:
    if from_checkpoint != "latest":
        return from_checkpoint
    if not config.job.checkpoint_dir:
        raise ValueError("--from-checkpoint latest needs job.checkpoint_dir in the config")
    return latest_checkpoint(config.job.checkpoint_dir)


def make_env(config: Config, parallelism: int | None = None,
             restore_from: str | None = None) -> StreamExecutionEnvironment:
    from camflow.infra.flink import make_env as configured_env
    options = {"python.fn-execution.bundle.time": str(config.job.python_bundle_ms),
               "python.fn-execution.bundle.size": str(config.job.python_bundle_size)}
    options.update(config.job.flink_options)
    if config.job.checkpoint_dir:
        options.update({"execution.checkpointing.dir": config.job.checkpoint_dir,
                        "execution.checkpointing.externalized-checkpoint-retention":
                            "RETAIN_ON_CANCELLATION"})
    if restore_from:
        options["execution.state-recovery.path"] = restore_from
    return configured_env(parallelism=parallelism or config.job.parallelism,
                          checkpoint_ms=config.job.checkpoint_interval_ms, config=options)


def run(config: Config, stop_offsets: dict[int, int] | None = None,
        parallelism: int | None = None, job_name: str | None = None,
        watchlist_stop_offsets: dict[int, int] | None = None, restore_from: str | None = None):
    env = make_env(config, parallelism, restore_from)
    build_pipeline(env, config, stop_offsets, watchlist_stop_offsets)
    return env.execute(job_name or f"camflow-{config.deployment}")


def start(config: Config, parallelism: int | None = None, job_name: str | None = None):
    """Submit the unbounded job without waiting: returns Flink's ``JobClient`` (cancel() it)."""
    env = make_env(config, parallelism)
    build_pipeline(env, config)
    return env.execute_async(job_name or f"camflow-{config.deployment}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="deployment YAML")
    parser.add_argument("--stop-offsets", help="JSON {partition: offset}: read frames up to these offsets, then finish")
    parser.add_argument("--watchlist-stop-offsets", help="JSON {partition: offset} of the watchlist for a bounded run")
    parser.add_argument("--parallelism", type=int)
    parser.add_argument("--from-checkpoint", help="'latest' (under job.checkpoint_dir) or a checkpoint/savepoint path")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    offsets = lambda text: {int(k): int(v) for k, v in json.loads(text).items()} if text else None
    run(config, offsets(args.stop_offsets), args.parallelism,
        watchlist_stop_offsets=offsets(args.watchlist_stop_offsets),
        restore_from=resolve_checkpoint(config, args.from_checkpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
