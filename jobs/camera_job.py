r"""The camflow streaming job. Reads like its dataflow diagram:

    frames (Kafka) -> admit -> [dead-letters]
                        |
                  event time (capture_ms, bounded out-of-orderness, idleness)
                        |
                  key by camera -> analyse: decode JPEG, detect, track, read faces/plates,
                        |                   scene rules, camera liveness -> [alerts]
                        +--> analyses (Kafka), appearances of tracks (Kafka)
                        +--> faces/plates -> match watchlist (broadcast) -> alerts, sightings,
                        |                                                   face-embeddings
                  summarise -> key by camera -> tumbling window -> anomaly score -> aggregates
                                  \-> sliding window ----------------------^
                                                      |                  \-> [alerts]
                                                      |-> crowd rule -> alerts (Kafka)
                                                      \-> [late -> dead-letters]

``analytics()`` is the whole dataflow: it takes its sources as streams of bytes and returns
each output as a stream of ``(key, Avro value)`` byte pairs (the key is the camera id), so the same logic runs on Kafka (``run``/``start``:
``kafka_sources`` and ``to_kafka``) and on in-memory collections (the broker-free topology
test). Run modes are explicit (``RunMode``): unbounded, or bounded by stop offsets, with or
without the watchlist.

Run it with ``camflow job run`` (embedded mini-cluster), ``camflow job submit`` (a Flink
cluster), or ``flink run -py jobs/camera_job.py -pyexec .venv/bin/python -- --config FILE``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.datastream import DataStream, StreamExecutionEnvironment

from camflow.config import Config, load_config
from camflow.jobs import operators as op
from camflow.jobs.kafka_io import (KEYED, frames_source, keyed_sink, use_keyed_records,
                                   watchlist_source)

# Sink records counted per value of a field as well (see ``op.EncodeRecords``).
COUNTED_BY = {"Alert": ("alerts", "type"), "DeadLetter": ("dead_letters", "reason")}

# Each output of the job: its Avro contract, the topic field in ``kafka.topics``, and the uid
# of its Kafka sink (uids are part of savepoints: never change them).
OUTPUTS = {
    "analyses": ("FrameAnalysis", "analyses", "analyses-sink"),
    "alerts": ("Alert", "alerts", "alerts-sink"),
    "aggregates": ("Aggregate", "aggregates", "aggregates-sink"),
    "dead_letters": ("DeadLetter", "dead_letters", "dead-letters-sink"),
    "sightings": ("Sighting", "sightings", "sightings-sink"),
    "face_embeddings": ("FaceEmbedding", "face_embeddings", "face-embeddings-sink"),
    "appearances": ("Appearance", "appearances", "appearances-sink"),
}


@dataclass(frozen=True)
class RunMode:
    """Unbounded (``stop_offsets`` None: resume from committed offsets, run until cancelled) or
    bounded (read frames up to ``stop_offsets``; the watchlist up to ``watchlist_stop_offsets``,
    and without them the bounded run has no watchlist)."""

    stop_offsets: dict[int, int] | None = None
    watchlist_stop_offsets: dict[int, int] | None = None

    @property
    def bounded(self) -> bool:
        return self.stop_offsets is not None

    @property
    def reads_watchlist(self) -> bool:
        return not self.bounded or self.watchlist_stop_offsets is not None


@dataclass
class Sources:
    """The job's inputs as streams of bytes: FrameSample records, and WatchlistEntry records
    (None: this run has no watchlist)."""

    frames: DataStream
    watchlist: DataStream | None = None


def matches_watchlist(config: Config) -> bool:
    job = config.job
    return job.watchlist.enabled and (job.recognition.faces or job.recognition.plates)


def encoded(stream: DataStream, contract: str, config: Config, topic: str, prepare=None,
            name: str | None = None) -> DataStream:
    """``stream``'s records as ``(camera id, Avro bytes in contract)`` pairs: the one way an
    output is encoded and keyed (every output record is keyed by its camera)."""
    count_as, count_by = COUNTED_BY.get(contract, (None, None))
    return stream.map(op.EncodeRecords(contract, config.kafka.registry_conf(), topic, count_as,
                                       count_by, prepare), KEYED).name(f"encode-{name or topic}")


def analytics(config: Config, sources: Sources) -> dict[str, DataStream]:
    """The dataflow (module docstring): sources in, ``{output: stream of (key, Avro bytes)}`` out."""
    job, topics = config.job, config.kafka.topics

    admitted = sources.frames.process(op.AdmitFrames(config)).name("admit")
    event_time = (WatermarkStrategy
                  .for_bounded_out_of_orderness(Duration.of_millis(job.out_of_orderness_ms))
                  .with_idleness(Duration.of_millis(job.idleness_ms))
                  .with_timestamp_assigner(op.CaptureTime()))
    analyses = (admitted
                .assign_timestamps_and_watermarks(event_time)
                .key_by(lambda frame: frame["camera_id"], key_type=Types.STRING())
                .process(op.AnalyseFrames(config)).name("analyse").uid("analyse"))

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
    outputs: dict[str, DataStream] = {}
    errors = [admitted.get_side_output(op.DEAD_LETTERS), analyses.get_side_output(op.DEAD_LETTERS),
              windows.get_side_output(op.LATE_FOR_WINDOW).process(op.LateFrames(topics.frames))]
    if matches_watchlist(config) and sources.watchlist is not None:
        watchlist = sources.watchlist.process(op.DecodeWatchlist(config)).name("decode-watchlist")
        errors.append(watchlist.get_side_output(op.DEAD_LETTERS))
        matches = (analyses
                   .filter(lambda analysis: len(analysis.faces) > 0 or len(analysis.plates) > 0)
                   .key_by(lambda analysis: analysis.camera_id, key_type=Types.STRING())
                   .connect(watchlist.broadcast(op.WATCHLIST))
                   .process(op.MatchWatchlist(config)).name("match-watchlist").uid("match-watchlist"))
        alerts = alerts.union(matches)
        outputs["sightings"] = matches.get_side_output(op.SIGHTINGS)
        outputs["face_embeddings"] = matches.get_side_output(op.FACE_EMBEDDINGS)
    elif job.watchlist.enabled and job.recognition.faces:
        # No watchlist in this run: every face is unmatched, and still searchable later.
        outputs["face_embeddings"] = (analyses.filter(lambda analysis: len(analysis.faces) > 0)
                                      .flat_map(op.unmatched_faces).name("faces-unmatched"))
    if job.appearance.enabled:
        outputs["appearances"] = analyses.get_side_output(op.APPEARANCES)
    outputs["analyses"] = analyses
    outputs["aggregates"] = aggregates
    outputs["alerts"] = alerts
    outputs["dead_letters"] = errors[0].union(*errors[1:])

    prepare = {"analyses": op.encode_analysis, "aggregates": op.aggregate_record}
    return {name: encoded(stream, OUTPUTS[name][0], config, getattr(topics, OUTPUTS[name][1]),
                          prepare.get(name), name=name.replace("_", "-"))
            for name, stream in outputs.items()}


def kafka_sources(env: StreamExecutionEnvironment, config: Config, mode: RunMode) -> Sources:
    kafka = config.kafka
    frames = env.from_source(frames_source(kafka, mode.stop_offsets),
                             WatermarkStrategy.no_watermarks(), "frames").uid("frames-source")
    watchlist = None
    if mode.reads_watchlist and matches_watchlist(config):
        watchlist = env.from_source(watchlist_source(kafka, mode.watchlist_stop_offsets),
                                    WatermarkStrategy.no_watermarks(), "watchlist") \
            .uid("watchlist-source")
    return Sources(frames, watchlist)


def to_kafka(outputs: dict[str, DataStream], config: Config) -> None:
    """Each output to its topic, keyed by camera: a camera's records of one output are in one
    partition, in the order the job emitted them."""
    if outputs:
        use_keyed_records(next(iter(outputs.values())).get_execution_environment())
    registered_schemas(outputs, config)
    for name, stream in outputs.items():
        _, topic_field, uid = OUTPUTS[name]
        topic = getattr(config.kafka.topics, topic_field)
        stream.sink_to(keyed_sink(config.kafka, topic)).name(name.replace("_", "-")).uid(uid)


def registered_schemas(outputs: dict[str, DataStream], config: Config) -> None:
    """With a schema registry and ``auto_register_schemas`` off (production), every output's
    contract must be registered (``camflow schemas register``) before the job starts: checked
    here, when the job is built, not on the job's first record."""
    registry = config.kafka.registry_conf()
    if not registry or config.kafka.schema_registry.auto_register_schemas:
        return
    from camflow.schemas.codec import AvroCodec
    for name in outputs:
        contract, topic_field, _ = OUTPUTS[name]
        subject = f"{getattr(config.kafka.topics, topic_field)}-value"
        try:
            AvroCodec(contract, registry, subject=subject)._schema_id()
        except Exception as exc:  # noqa: BLE001 -- not registered, or no registry: say which
            raise RuntimeError(f"{contract} is not registered under {subject} in the schema "
                               f"registry ({type(exc).__name__}: {exc}); run camflow schemas "
                               "register --config FILE before the job") from None


def build_pipeline(env: StreamExecutionEnvironment, config: Config,
                   mode: RunMode = RunMode()) -> None:
    """The production wiring: Kafka in, the dataflow, Kafka out."""
    to_kafka(analytics(config, kafka_sources(env, config, mode)), config)


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
    from camflow.jobs.environment import job_environment
    return job_environment(config.job, parallelism, restore_from)


def run(config: Config, stop_offsets: dict[int, int] | None = None,
        parallelism: int | None = None, job_name: str | None = None,
        watchlist_stop_offsets: dict[int, int] | None = None, restore_from: str | None = None):
    """Run the job on Kafka and wait for it (bounded runs end at their stop offsets)."""
    env = make_env(config, parallelism, restore_from)
    build_pipeline(env, config, RunMode(stop_offsets, watchlist_stop_offsets))
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
