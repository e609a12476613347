"""``camflow status``: how far behind each consumer is, and how the Flink job is doing.

Kafka: per configured topic its end offsets, and per consumer group that reads it (the job's
Kafka sources ``<group_id>-job-<topic>``, which commit their offsets when a checkpoint
completes; the sink's ``<group_id>-sink``, which commits after each batch is in the store) the
committed offsets and the lag (end - committed). End offsets are those the broker reports,
unless ``exact``: then they are found by reading each partition from the committed offset on
(costs a read of the lag). The dev broker (Tansu) reports end offsets that are too low after
batched writes; a partition whose reported end is below its committed offset has lag None.

Flink: the jobs its REST API lists (``job.rest_url``), each with state, uptime, restarts and
its last checkpoint.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request

from camflow.config import Config, Kafka

# The job's sources; everything the sink writes to the store.
JOB_TOPICS = ("frames", "watchlist")
SINK_TOPICS = ("alerts", "aggregates", "analyses", "sightings", "watchlist_audit",
               "face_embeddings", "appearances")
TOPICS = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
          "watchlist_audit", "sightings", "face_embeddings", "appearances")
TERMINAL = ("FINISHED", "CANCELED", "FAILED", "SUSPENDED")
RECENT_ENDED_JOBS = 5


def consumer_groups(kafka: Kafka, topic_kind: str) -> list[str]:
    """The consumer groups that commit offsets on a topic (``topic_kind``: a Topics field)."""
    topic = getattr(kafka.topics, topic_kind)
    if topic_kind in JOB_TOPICS:
        return [f"{kafka.group_id}-job-{topic}"]  # as jobs/kafka_io.py names them
    if topic_kind in SINK_TOPICS:
        return [f"{kafka.group_id}-sink"]
    return []


def kafka_status(kafka: Kafka, exact: bool = False, timeout: float = 10.0) -> dict:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient(kafka.client_conf())
    metadata = admin.list_topics(timeout=timeout).topics
    rows, present = [], []
    for kind in TOPICS:
        topic = getattr(kafka.topics, kind)
        meta = metadata.get(topic)
        row = {"topic": topic, "kind": kind, "exists": meta is not None and meta.error is None}
        rows.append(row)
        if not row["exists"]:
            continue
        partitions = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        ends = {tp.partition: future.result().offset for tp, future in admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout).items()}
        groups = {}
        for group in consumer_groups(kafka, kind):
            found = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, partitions)], request_timeout=timeout)
            committed = {tp.partition: tp.offset if tp.offset >= 0 else None
                         for tp in found[group].result().topic_partitions}
            groups[group] = committed
        present.append((row, len(partitions), ends, groups))
    if exact:  # every topic read at once: each read ends after a second without records
        with ThreadPoolExecutor(max_workers=len(present) or 1) as pool:
            exact_ends = list(pool.map(lambda f: read_ends(kafka, f[0]["topic"], f[2], f[3]),
                                       present))
        present = [(row, n, ends, groups) for (row, n, _, groups), ends in zip(present, exact_ends)]
    for row, partitions, ends, groups in present:
        row["partitions"] = partitions
        row["end"] = {str(p): o for p, o in sorted(ends.items())}
        row["groups"] = [{"group": group, **lags(ends, committed)}
                         for group, committed in groups.items()]
    return {"bootstrap_servers": kafka.bootstrap_servers, "exact": exact, "topics": rows}


def lags(ends: dict[int, int], committed: dict[int, int | None]) -> dict:
    """Per partition: committed offset and lag (None where the reported end is below the
    committed offset: a wrong end offset). A group with nothing committed lags by all."""
    per_partition, total, known = {}, 0, True
    for partition, end in sorted(ends.items()):
        offset = committed.get(partition)
        lag = end - (offset or 0)
        if lag < 0:
            lag, known = None, False
        else:
            total += lag
        per_partition[str(partition)] = {"committed": offset, "lag": lag}
    return {"partitions": per_partition, "committed": sum(o or 0 for o in committed.values()),
            "has_committed": any(o is not None for o in committed.values()),
            "lag": total if known else None}


def read_ends(kafka: Kafka, topic: str, ends: dict[int, int],
              groups: dict[str, dict[int, int | None]]) -> dict[int, int]:
    """End offsets found by reading each partition from its lowest committed offset (or the
    start) on, where the broker's reported end offsets are not to be trusted."""
    from camflow.core.kafka import read_topic
    starts = {}
    for partition in ends:
        committed = [c[partition] for c in groups.values() if c.get(partition) is not None]
        starts[partition] = min(committed) if committed else 0
    found = dict(starts)
    for msg in read_topic(kafka, topic, idle_timeout_s=1.0, start_offsets=starts):
        found[msg.partition()] = max(found[msg.partition()], msg.offset() + 1)
    return found


def rest(url: str, path: str, timeout: float = 5.0):
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as response:
        return json.loads(response.read())


def flink_status(url: str, timeout: float = 5.0) -> dict:
    """Jobs on the cluster behind ``url``: the running ones and the few that ended last."""
    try:
        overview = rest(url, "/jobs/overview", timeout)["jobs"]
    except (OSError, ValueError, KeyError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return {"url": url, "reachable": False, "error": str(reason), "jobs": []}
    overview.sort(key=lambda j: (j["state"] in TERMINAL, -j.get("start-time", 0)))
    running = [j for j in overview if j["state"] not in TERMINAL]
    ended = [j for j in overview if j["state"] in TERMINAL][:RECENT_ENDED_JOBS]
    jobs = []
    for job in running + ended:
        jid = job["jid"]
        entry = {"id": jid, "name": job["name"], "state": job["state"],
                 "started_ms": job.get("start-time"), "duration_ms": job.get("duration"),
                 "restarts": None, "checkpoints": None}
        try:
            metrics = rest(url, f"/jobs/{jid}/metrics?get=numRestarts", timeout)
            entry["restarts"] = int(metrics[0]["value"]) if metrics else None
            entry["checkpoints"] = checkpoint_summary(rest(url, f"/jobs/{jid}/checkpoints", timeout))
        except (OSError, ValueError, KeyError, IndexError):
            pass  # an ended job's details may be gone from the history
        jobs.append(entry)
    return {"url": url, "reachable": True, "jobs": jobs}


def checkpoint_summary(checkpoints: dict) -> dict:
    counts = checkpoints.get("counts", {})
    latest = checkpoints.get("latest") or {}
    completed, failed = latest.get("completed"), latest.get("failed")
    summary = {"completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
               "in_progress": counts.get("in_progress", 0), "last": None, "last_failed_ms": None}
    if completed:
        summary["last"] = {"id": completed.get("id"),
                           "time_ms": completed.get("latest_ack_timestamp"),
                           "duration_ms": completed.get("end_to_end_duration"),
                           "size_bytes": completed.get("checkpointed_size",
                                                       completed.get("state_size"))}
    if failed:
        summary["last_failed_ms"] = failed.get("failure_timestamp")
    return summary


# Read whole by every instance of their reader (broadcast): their partitions bound nothing.
BROADCAST_TOPICS = ("watchlist", "watchlist_audit")


def warnings(kafka_report: dict, parallelism: int) -> list[str]:
    """Topics that hold the deployment back: missing ones, and ones with fewer partitions than
    the job's parallelism (the job's Kafka source leaves instances idle; a consumer group of
    the output cannot spread wider)."""
    found = []
    for row in kafka_report["topics"]:
        if not row["exists"]:
            found.append(f"topic {row['topic']} is missing: camflow topics apply --config FILE")
        elif row["kind"] not in BROADCAST_TOPICS and row["partitions"] < parallelism:
            found.append(f"topic {row['topic']} has {row['partitions']} partition(s), fewer than the "
                         f"job's parallelism {parallelism}: raise it with kafka.topics.partitions "
                         "(or its settings) and camflow topics apply")
    return found


def status(config: Config, exact: bool = False, flink_url: str | None = None) -> dict:
    url = flink_url or config.job.rest_url
    kafka = kafka_status(config.kafka, exact=exact)
    return {"deployment": config.deployment, "time_ms": int(time.time() * 1000),
            "kafka": kafka, "warnings": warnings(kafka, config.job.parallelism),
            "flink": flink_status(url) if url else None}


def format_status(report: dict) -> list[str]:
    """A short human table (what ``--json`` prints in full)."""
    kafka = report["kafka"]
    tw = max([5] + [len(row["topic"]) for row in kafka["topics"]])
    gw = max([5] + [len(g["group"]) for row in kafka["topics"] for g in row.get("groups", [])])
    lines = [f"Kafka {kafka['bootstrap_servers']}  (end offsets "
             f"{'found by reading' if kafka['exact'] else 'as the broker reports them'})",
             f"{'TOPIC':<{tw}} {'PARTS':>7} {'END':>10}  {'GROUP':<{gw}} {'COMMITTED':>10} "
             f"{'LAG':>8}"]
    wrong_end = False
    for row in kafka["topics"]:
        if not row["exists"]:
            lines.append(f"{row['topic']:<{tw}} {'missing':>7}")
            continue
        end = sum(row["end"].values())
        head = f"{row['topic']:<{tw}} {row['partitions']:>7} {end:>10}"
        if not row["groups"]:
            lines.append(f"{head}  -")
        for group in row["groups"]:
            committed = group["committed"] if group["has_committed"] else "none"
            lag = "?" if group["lag"] is None else group["lag"]
            wrong_end |= group["lag"] is None
            lines.append(f"{head}  {group['group']:<{gw}} {committed:>10} {lag:>8}")
    if wrong_end:
        lines.append("? the broker reports an end offset below the committed one (Tansu does "
                     "after batched writes): --exact finds the end by reading")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    flink = report.get("flink")
    if flink is None:
        return lines
    if not flink["reachable"]:
        lines.append(f"Flink {flink['url']}: not reachable ({flink['error']})")
        return lines
    lines.append(f"Flink {flink['url']}: {len(flink['jobs'])} job(s)")
    if flink["jobs"]:
        lines.append(f"{'JOB':<32}  {'NAME':<28} {'STATE':<11} {'UPTIME':>8} {'RESTARTS':>8}  "
                     "LAST CHECKPOINT")
    now = report["time_ms"]
    for job in flink["jobs"]:
        restarts = "-" if job["restarts"] is None else job["restarts"]
        lines.append(f"{job['id']:<32}  {job['name'][:28]:<28} {job['state']:<11} "
                     f"{duration(job['duration_ms']):>8} {restarts:>8}  "
                     f"{checkpoint_text(job['checkpoints'], now)}")
    return lines


def duration(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    seconds = int(ms // 1000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def checkpoint_text(checkpoints: dict | None, now_ms: int) -> str:
    if not checkpoints:
        return "-"
    last = checkpoints["last"]
    text = "none completed" if last is None else (
        f"#{last['id']} {duration(now_ms - last['time_ms'])} ago, {last['duration_ms']} ms, "
        f"{(last['size_bytes'] or 0) / 1e6:.1f} MB")
    if checkpoints["failed"]:
        text += f"; {checkpoints['failed']} failed"
    return text
