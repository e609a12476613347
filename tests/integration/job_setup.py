"""Kafka settings and topics of a test job run: fresh topic names per run, created up front."""
from __future__ import annotations

JOB_TOPICS = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "appearances")


def kafka_settings(bootstrap: str, suffix: str, partitions: int) -> dict:
    """The ``kafka`` section: topics named ``<name>-<suffix>`` (dead letters with a dash)."""
    topics = {name: f"{name.replace('_', '-')}-{suffix}" for name in JOB_TOPICS}
    return {"bootstrap_servers": bootstrap, "group_id": suffix,
            "topics": {**topics, "partitions": partitions}}


def create_job_topics(bootstrap: str, config) -> None:
    from camflow.infra.broker import ensure_topics
    topics = config.kafka.topics
    ensure_topics(bootstrap, {getattr(topics, name): topics.partitions for name in JOB_TOPICS})


def publish_frames(config, frames, camera_id: str = "walkway", max_width: int = 320) -> set[tuple[str, int]]:
    """Sampled frames (``sampler.sample_file``) as the sampler encodes them, acknowledged;
    returns their (camera, sequence) keys."""
    from camflow.core.kafka import DeliveryTracker, produce_reliably, reliable_producer
    from camflow.schemas.codec import AvroCodec
    from camflow.transforms.frames import encode_jpeg, resize_to_max_width
    codec, producer, tracker = AvroCodec("FrameSample"), reliable_producer(config.kafka), DeliveryTracker()
    for frame in frames:
        image = resize_to_max_width(frame.image, max_width)
        produce_reliably(producer, config.kafka.topics.frames, codec.encode({
            "camera_id": camera_id, "capture_ms": frame.capture_ms, "sequence": frame.sequence,
            "jpeg": encode_jpeg(image, 85), "jpeg_ref": None, "width": int(image.shape[1]),
            "height": int(image.shape[0]), "sampler_id": "test"}), camera_id.encode(),
            frame.capture_ms, tracker)
    producer.flush(60)
    assert tracker.delivered == len(frames)
    return {(camera_id, f.sequence) for f in frames}


def decoded(config, topic: str, contract: str) -> list[dict]:
    """Every record of ``topic``, decoded as ``contract``."""
    from camflow.core.kafka import read_topic
    from camflow.schemas.codec import AvroCodec
    codec = AvroCodec(contract)
    return [codec.decode(m.value()) for m in read_topic(config.kafka, topic, idle_timeout_s=1.5)]


def running_watchlist_job(live_config, deployment: str, recognition: dict):
    """The unbounded job on the mini-cluster for the live watchlist tests (one camera,
    ``port-gate``; faces or plates as ``recognition`` says); yields its config, cancels it."""
    from camflow.jobs.camera_job import start
    config = live_config(deployment, ["port-gate"], {
        "window_ms": 5000, "idleness_ms": 1000, "checkpoint_interval_ms": 2000,
        "detector": {"threads": 2}, "tracking": {"min_hits": 2},
        "recognition": {**recognition, "retry_ms": 0},
        "watchlist": {"confirm_window_ms": 10000, "cooldown_ms": 60000}})
    client = start(config)
    try:
        yield config
    finally:
        client.cancel().result()


def wait_until_admitted(config, last_capture_ms: int) -> None:
    """Sleep until a frame captured at ``last_capture_ms`` is no longer "future" for the job
    (``limits.max_future_skew_ms`` past its clock): a test that publishes ahead of now must
    not depend on how fast the machine got there."""
    import time
    margin_ms = config.job.limits.max_future_skew_ms - 1_000
    time.sleep(max(0.0, (last_capture_ms - margin_ms - time.time() * 1000) / 1000))
