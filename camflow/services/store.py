"""The analyst store: alerts, aggregates, frame analyses, sightings and face embeddings in SQL,
written idempotently.

DuckDB (an embedded file, the default) or PostgreSQL (``postgresql://...``). Every write is an
upsert on the record's natural key (alert id; camera + window; camera + sequence), so a record
delivered twice, after a failover or a sink restart, leaves exactly one row.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from camflow.transforms.detections import VEHICLE_CLASSES

# An appearance record replaces a track's best crop (and its description) only when it has one
# and it is at least as large: a late redelivery of an earlier, smaller crop changes nothing.
_LARGER_CROP = ("excluded.colour IS NOT NULL AND (excluded.x2 - excluded.x1) * (excluded.y2 - "
                "excluded.y1) >= (appearances.x2 - appearances.x1) * (appearances.y2 - appearances.y1)")
_BEST_CROP_COLUMNS = ("best_ms", "x1", "y1", "x2", "y2", "upper_colour", "lower_colour",
                      "body_colour", "colour", "embedding", "embedding_model", "crop_jpeg")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT PRIMARY KEY, type TEXT NOT NULL, severity TEXT NOT NULL,
        camera_id TEXT NOT NULL, time_ms BIGINT NOT NULL, alert_time TIMESTAMP NOT NULL,
        subject TEXT, score DOUBLE PRECISION, track_id BIGINT, evidence TEXT,
        evidence_ref TEXT, has_evidence_jpeg BOOLEAN, deliveries INTEGER NOT NULL DEFAULT 1,
        clip_ref TEXT)""",
    """CREATE TABLE IF NOT EXISTS aggregates (
        camera_id TEXT NOT NULL, window_start_ms BIGINT NOT NULL, window_end_ms BIGINT NOT NULL,
        window_start TIMESTAMP NOT NULL, frames INTEGER NOT NULL, unique_tracks INTEGER NOT NULL,
        anomaly_score DOUBLE PRECISION,
        PRIMARY KEY (camera_id, window_start_ms, window_end_ms))""",
    """CREATE TABLE IF NOT EXISTS aggregate_counts (
        camera_id TEXT NOT NULL, window_start_ms BIGINT NOT NULL, window_end_ms BIGINT NOT NULL,
        class_name TEXT NOT NULL, max_in_frame INTEGER NOT NULL, mean_per_frame DOUBLE PRECISION,
        unique_tracks INTEGER,
        PRIMARY KEY (camera_id, window_start_ms, window_end_ms, class_name))""",
    """CREATE TABLE IF NOT EXISTS line_crossings (
        camera_id TEXT NOT NULL, window_start_ms BIGINT NOT NULL, window_end_ms BIGINT NOT NULL,
        line_id TEXT NOT NULL, direction TEXT NOT NULL, class_name TEXT NOT NULL,
        crossings INTEGER NOT NULL,
        PRIMARY KEY (camera_id, window_start_ms, window_end_ms, line_id, direction, class_name))""",
    """CREATE TABLE IF NOT EXISTS frame_analyses (
        camera_id TEXT NOT NULL, sequence BIGINT NOT NULL, capture_ms BIGINT NOT NULL,
        capture_time TIMESTAMP NOT NULL, processed_ms BIGINT NOT NULL, objects INTEGER NOT NULL,
        persons INTEGER NOT NULL, vehicles INTEGER NOT NULL, detections TEXT NOT NULL,
        deliveries INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (camera_id, sequence))""",
    """CREATE TABLE IF NOT EXISTS sightings (
        sighting_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, kind TEXT NOT NULL,
        camera_id TEXT NOT NULL, time_ms BIGINT NOT NULL, sighting_time TIMESTAMP NOT NULL,
        score DOUBLE PRECISION, track_id BIGINT, alert_id TEXT, plate TEXT)""",
    """CREATE TABLE IF NOT EXISTS watchlist_audit (
        kind TEXT NOT NULL, subject_id TEXT NOT NULL, time_ms BIGINT NOT NULL,
        change_time TIMESTAMP NOT NULL, changed_by TEXT NOT NULL, removed BOOLEAN NOT NULL,
        name TEXT, category TEXT, reason TEXT, photos INTEGER,
        PRIMARY KEY (kind, subject_id, time_ms))""",
    # A subject's path across cameras, in time order (camflow sightings --subject ID).
    """CREATE OR REPLACE VIEW subject_paths AS
        SELECT s.subject_id, s.kind, s.sighting_time, s.camera_id, s.score, s.track_id,
               s.alert_id, s.time_ms
        FROM sightings s""",
    # Faces read by the job, for retroactive search (camflow search); unmatched rows are
    # deleted after store.embedding_retention_days (delete_expired).
    """CREATE TABLE IF NOT EXISTS face_embeddings (
        face_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, time_ms BIGINT NOT NULL,
        capture_time TIMESTAMP NOT NULL, sequence BIGINT NOT NULL, track_id BIGINT,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        embedding BYTEA NOT NULL, matched_subject TEXT)""",
    # What each person / vehicle track looked like (camflow find / similar): one row per track,
    # refreshed as better crops come; deleted after store.embedding_retention_days.
    """CREATE TABLE IF NOT EXISTS appearances (
        appearance_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, track_id BIGINT NOT NULL,
        class_name TEXT NOT NULL, first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL,
        first_seen TIMESTAMP NOT NULL, best_ms BIGINT NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        upper_colour TEXT, lower_colour TEXT, body_colour TEXT, heading TEXT,
        colour BYTEA, embedding BYTEA, embedding_model TEXT, crop_jpeg BYTEA)""",
    """CREATE TABLE IF NOT EXISTS sink_rejects (
        topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL,
        reason TEXT NOT NULL, payload BYTEA,
        PRIMARY KEY (topic, kafka_partition, kafka_offset))""",
    # The evidence crop an alert carried (watchlist alerts), for the console and reports.
    # One row per vehicle track whose plate was read: the track's fused read (the character vote
    # over its frames), updated as reads arrive; keyed by the track's first read.
    """CREATE TABLE IF NOT EXISTS vehicle_plates (
        camera_id TEXT NOT NULL, track_id BIGINT NOT NULL, first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL, plate_text TEXT NOT NULL, plate_display TEXT,
        reads INTEGER NOT NULL, best_score REAL NOT NULL, best_sequence BIGINT NOT NULL,
        PRIMARY KEY (camera_id, track_id, first_ms))""",
    # Who searched the store for a person or looked at evidence, when (SECURITY.md).
    """CREATE TABLE IF NOT EXISTS access_audit (
        time_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
        detail TEXT)""",
    """CREATE TABLE IF NOT EXISTS alert_evidence (
        alert_id TEXT PRIMARY KEY, jpeg BYTEA NOT NULL)""",
    # What operators did about an alert in the console (acknowledge / dismiss): who, when.
    """CREATE TABLE IF NOT EXISTS alert_actions (
        alert_id TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL,
        action_ms BIGINT NOT NULL, action_time TIMESTAMP NOT NULL, note TEXT,
        PRIMARY KEY (alert_id, action_ms, actor))""",
    # Every alert with the latest operator action on it (NULL: still open).
    """CREATE OR REPLACE VIEW alert_status AS
        SELECT a.alert_id, a.alert_time, a.type, a.severity, a.camera_id, a.subject, a.score,
               x.action, x.actor, x.action_time, x.action_ms - a.time_ms AS response_ms
        FROM alerts a LEFT JOIN alert_actions x ON x.alert_id = a.alert_id
         AND x.action_ms = (SELECT MAX(y.action_ms) FROM alert_actions y
                            WHERE y.alert_id = a.alert_id)""",
]

ALERT_ACTIONS = ("acknowledge", "dismiss")



def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).replace(tzinfo=None)


class AnalystStore:
    """A DB-API connection plus the upserts; ``url`` is ``duckdb:///path`` or ``postgresql://``."""

    def __init__(self, url: str, password: str | None = None):
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg
            self.kind = "postgresql"
            extra = {"password": password} if password is not None else {}
            self.conn = psycopg.connect(url, autocommit=False, **extra)
        elif url.startswith("duckdb://"):
            import duckdb
            self.kind = "duckdb"
            # SQLAlchemy's convention: duckdb:///relative/path, duckdb:////absolute/path.
            path = url.removeprefix("duckdb:///") if url.startswith("duckdb:///") else ":memory:"
            if path not in ("", ":memory:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = duckdb.connect(path or ":memory:")
        else:
            from camflow.transforms.dead_letters import redact
            raise ValueError(f"unsupported store URL {redact(url)!r}: use duckdb:///PATH or "
                             "postgresql://...")
        self.create_schema()

    @classmethod
    def of(cls, store, url: str | None = None) -> "AnalystStore":
        """The store a config's ``store`` section names (``url`` overrides its URL), with the
        password from its environment variable or file."""
        return cls(url or store.url, store.password())

    def _sql(self, statement: str) -> str:
        if self.kind == "duckdb":
            return statement.replace("%s", "?").replace("BYTEA", "BLOB")
        return statement

    def execute(self, statement: str, params: Iterable = ()):
        cur = self.conn.cursor()
        cur.execute(self._sql(statement), tuple(params))
        return cur

    def query(self, statement: str, params: Iterable = ()) -> list[tuple]:
        return self.execute(statement, params).fetchall()

    def create_schema(self) -> None:
        for statement in SCHEMA:
            self.execute(statement)
        # Rejected records carry a time since retention applies to them (older stores: NULL,
        # which retention treats as expired).
        self.execute("ALTER TABLE sink_rejects ADD COLUMN IF NOT EXISTS rejected_ms BIGINT")
        # The alert's clip in the evidence store (camflow/services/clips.py; older stores: added).
        self.execute("ALTER TABLE alerts ADD COLUMN IF NOT EXISTS clip_ref TEXT")
        if self.kind == "postgresql":  # retention and search scan by capture time
            # (not on DuckDB: its ART indexes make ON CONFLICT updates of indexed tables fail)
            self.execute("CREATE INDEX IF NOT EXISTS face_embeddings_time "
                         "ON face_embeddings (time_ms)")
        self.commit()

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()

    # -- upserts, one per contract ------------------------------------------------------------
    def upsert_alert(self, a: dict) -> None:
        self.execute(
            """INSERT INTO alerts (alert_id, type, severity, camera_id, time_ms, alert_time, subject,
                   score, track_id, evidence, evidence_ref, has_evidence_jpeg)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (alert_id) DO UPDATE SET
                   severity = excluded.severity, score = excluded.score,
                   evidence = excluded.evidence, evidence_ref = excluded.evidence_ref,
                   has_evidence_jpeg = excluded.has_evidence_jpeg,
                   deliveries = alerts.deliveries + 1""",
            (a["alert_id"], a["type"], a["severity"], a["camera_id"], a["time_ms"], _ts(a["time_ms"]),
             a.get("subject"), a.get("score"), a.get("track_id"), a.get("evidence"),
             a.get("evidence_ref"), a.get("evidence_jpeg") is not None))
        if a.get("evidence_jpeg"):
            self.execute(
                """INSERT INTO alert_evidence (alert_id, jpeg) VALUES (%s, %s)
                   ON CONFLICT (alert_id) DO UPDATE SET jpeg = excluded.jpeg""",
                (a["alert_id"], a["evidence_jpeg"]))

    def set_clip_ref(self, alert_id: str, ref: str) -> None:
        """Links the alert's clip (set once the sink made it; ``upsert_alert`` leaves it be, so
        a replayed alert keeps its clip). The caller commits."""
        self.execute("UPDATE alerts SET clip_ref = %s WHERE alert_id = %s", (ref, alert_id))

    def alert_evidence(self, alert_id: str) -> bytes | None:
        rows = self.query("SELECT jpeg FROM alert_evidence WHERE alert_id = %s", (alert_id,))
        return bytes(rows[0][0]) if rows else None

    def record_alert_action(self, alert_id: str, action: str, actor: str,
                            note: str | None = None, now_ms: int | None = None) -> int:
        """An operator's acknowledge / dismiss, kept with who and when; commits. Returns the
        action time (ms)."""
        if action not in ALERT_ACTIONS:
            raise ValueError(f"unknown alert action {action!r}: use one of {ALERT_ACTIONS}")
        if not alert_id or not actor:
            raise ValueError("an alert action needs an alert id and an actor")
        when = int(time.time() * 1000) if now_ms is None else int(now_ms)
        self.execute(
            """INSERT INTO alert_actions (alert_id, action, actor, action_ms, action_time, note)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (alert_id, action_ms, actor) DO NOTHING""",
            (alert_id, action, actor, when, _ts(when), note))
        self.commit()
        return when

    def alert_actions(self, alert_ids: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """alert id -> its actions, oldest first (all alerts when ``alert_ids`` is None)."""
        sql = "SELECT alert_id, action, actor, action_ms, note FROM alert_actions"
        params: tuple = ()
        ids = list(alert_ids) if alert_ids is not None else None
        if ids is not None:
            if not ids:
                return {}
            sql += " WHERE alert_id IN (" + ", ".join(["%s"] * len(ids)) + ")"
            params = tuple(ids)
        out: dict[str, list[dict]] = {}
        for alert_id, action, actor, action_ms, note in self.query(sql + " ORDER BY action_ms", params):
            out.setdefault(alert_id, []).append(
                {"action": action, "actor": actor, "time_ms": action_ms, "note": note})
        return out

    def upsert_aggregate(self, g: dict) -> None:
        key = (g["camera_id"], g["window_start_ms"], g["window_end_ms"])
        self.execute(
            """INSERT INTO aggregates (camera_id, window_start_ms, window_end_ms, window_start, frames,
                   unique_tracks, anomaly_score) VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (camera_id, window_start_ms, window_end_ms) DO UPDATE SET
                   frames = excluded.frames, unique_tracks = excluded.unique_tracks,
                   anomaly_score = excluded.anomaly_score""",
            (*key, _ts(g["window_start_ms"]), g["frames"], g["unique_tracks"], g.get("anomaly_score")))
        means = g.get("mean_by_class") or {}
        uniques = g.get("unique_tracks_by_class") or {}
        for name, count in sorted(g["counts_by_class"].items()):
            self.execute(
                """INSERT INTO aggregate_counts (camera_id, window_start_ms, window_end_ms, class_name,
                       max_in_frame, mean_per_frame, unique_tracks) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (camera_id, window_start_ms, window_end_ms, class_name) DO UPDATE SET
                       max_in_frame = excluded.max_in_frame, mean_per_frame = excluded.mean_per_frame,
                       unique_tracks = excluded.unique_tracks""",
                (*key, name, count, means.get(name), uniques.get(name)))

        for crossing, count in sorted((g.get("line_crossings") or {}).items()):
            line_id, direction, name = crossing.rsplit(":", 2)
            self.execute(
                """INSERT INTO line_crossings (camera_id, window_start_ms, window_end_ms, line_id,
                       direction, class_name, crossings) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (camera_id, window_start_ms, window_end_ms, line_id, direction,
                                class_name) DO UPDATE SET crossings = excluded.crossings""",
                (*key, line_id, direction, name, count))

    def upsert_analysis(self, f: dict) -> None:
        classes = [d["class_name"] for d in f["detections"]]
        detections = [{k: d[k] for k in ("class_name", "score", "x1", "y1", "x2", "y2", "track_id")}
                      for d in f["detections"]]
        self.execute(
            """INSERT INTO frame_analyses (camera_id, sequence, capture_ms, capture_time, processed_ms,
                   objects, persons, vehicles, detections) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (camera_id, sequence) DO UPDATE SET
                   processed_ms = excluded.processed_ms, objects = excluded.objects,
                   persons = excluded.persons, vehicles = excluded.vehicles,
                   detections = excluded.detections,
                   deliveries = frame_analyses.deliveries + 1""",
            (f["camera_id"], f["sequence"], f["capture_ms"], _ts(f["capture_ms"]), f["processed_ms"],
             len(classes), classes.count("person"), sum(c in VEHICLE_CLASSES for c in classes),
             json.dumps(detections, separators=(",", ":"))))
        for d in f["detections"]:
            a = d.get("attributes") or {}
            if "plate_first_ms" in a and d["track_id"] >= 0:
                self.upsert_vehicle_plate(f["camera_id"], d["track_id"], int(a["plate_first_ms"]),
                                          f["capture_ms"], a["plate_text"], a.get("plate_display"),
                                          int(a.get("plate_reads", 1)), d["score"], f["sequence"])

    def upsert_vehicle_plate(self, camera_id: str, track_id: int, first_ms: int, time_ms: int,
                             text: str, display: str | None, reads: int, score: float,
                             sequence: int) -> None:
        """The track's fused plate read, replaced by a later frame's (more reads fused)."""
        self.execute(
            """INSERT INTO vehicle_plates (camera_id, track_id, first_ms, last_ms, plate_text,
                   plate_display, reads, best_score, best_sequence)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (camera_id, track_id, first_ms) DO UPDATE SET
                   last_ms = GREATEST(vehicle_plates.last_ms, excluded.last_ms),
                   plate_text = CASE WHEN excluded.reads >= vehicle_plates.reads
                                     THEN excluded.plate_text ELSE vehicle_plates.plate_text END,
                   plate_display = CASE WHEN excluded.reads >= vehicle_plates.reads
                                        THEN excluded.plate_display ELSE vehicle_plates.plate_display END,
                   best_sequence = CASE WHEN excluded.best_score > vehicle_plates.best_score
                                        THEN excluded.best_sequence ELSE vehicle_plates.best_sequence END,
                   best_score = GREATEST(vehicle_plates.best_score, excluded.best_score),
                   reads = GREATEST(vehicle_plates.reads, excluded.reads)""",
            (camera_id, int(track_id), int(first_ms), int(time_ms), text, display, int(reads),
             float(score), int(sequence)))

    def vehicle_plates_since(self, since_ms: int, plate_text: str | None = None) -> list[tuple]:
        """Fused plate reads of vehicle tracks seen at or after ``since_ms`` (only those of
        ``plate_text`` when given), in time order: (first_ms, last_ms, camera_id, track_id,
        plate_text, plate_display, reads, best_score)."""
        where, params = "last_ms >= %s", [int(since_ms)]
        if plate_text is not None:
            where, params = where + " AND plate_text = %s", params + [plate_text]
        return self.query(
            "SELECT first_ms, last_ms, camera_id, track_id, plate_text, plate_display, reads, "
            f"best_score FROM vehicle_plates WHERE {where} ORDER BY first_ms, camera_id", params)

    def upsert_sighting(self, s: dict) -> None:
        self.execute(
            """INSERT INTO sightings (sighting_id, subject_id, kind, camera_id, time_ms, sighting_time,
                   score, track_id, alert_id, plate) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (sighting_id) DO UPDATE SET score = excluded.score,
                   alert_id = excluded.alert_id""",
            (s["sighting_id"], s["subject_id"], s["kind"], s["camera_id"], s["time_ms"],
             _ts(s["time_ms"]), s["score"], s.get("track_id"), s.get("alert_id"), s.get("plate")))

    def upsert_face_embedding(self, f: dict) -> None:
        """A face read (FaceEmbedding); the embedding as float32 little-endian bytes. A face
        once matched stays matched when delivered again."""
        from camflow.schemas.codec import SchemaError
        from camflow.transforms.watchlist import DIM, embedding_bytes
        if len(f["embedding"]) != DIM:
            raise SchemaError("malformed_record", f"face {f['face_id']}: embedding of "
                              f"{len(f['embedding'])} floats, expected {DIM}")
        self.execute(
            """INSERT INTO face_embeddings (face_id, camera_id, time_ms, capture_time, sequence,
                   track_id, x1, y1, x2, y2, embedding, matched_subject)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (face_id) DO UPDATE SET
                   matched_subject = COALESCE(excluded.matched_subject,
                                              face_embeddings.matched_subject)""",
            (f["face_id"], f["camera_id"], f["time_ms"], _ts(f["time_ms"]), f["sequence"],
             f.get("track_id"), f["x1"], f["y1"], f["x2"], f["y2"],
             embedding_bytes(f["embedding"]), f.get("matched_subject")))

    def face_embeddings_since(self, since_ms: int, batch: int = 10_000):
        """Batches of (face_id, camera_id, time_ms, track_id, matched_subject, embedding
        bytes) of the faces captured at or after ``since_ms``."""
        sql = self._sql("SELECT face_id, camera_id, time_ms, track_id, matched_subject, embedding "
                        "FROM face_embeddings WHERE time_ms >= %s")
        # PostgreSQL: a server-side cursor, so that a large store is not read at once.
        cur = (self.conn.cursor(name="face_search") if self.kind == "postgresql"
               else self.conn.cursor())
        cur.execute(sql, (int(since_ms),))
        try:
            while rows := cur.fetchmany(batch):
                yield rows
        finally:
            cur.close()

    def count_face_embeddings(self, since_ms: int) -> int:
        return self.query("SELECT COUNT(*) FROM face_embeddings WHERE time_ms >= %s",
                          (int(since_ms),))[0][0]

    def upsert_appearance(self, a: dict) -> None:
        """A track's appearance (Appearance): vectors as float32 little-endian bytes. A closing
        record (no vectors) only moves last-seen time and heading on; a refresh replaces the
        best crop and its description."""
        from camflow.schemas.codec import SchemaError
        from camflow.transforms.appearance import COLOUR_SIZE
        from camflow.transforms.watchlist import embedding_bytes
        colour, embedding = a.get("colour"), a.get("embedding")
        if colour is not None and len(colour) != COLOUR_SIZE:
            # `similar` stacks every track's colour vector: one of another size would stop it.
            raise SchemaError("malformed_record", f"appearance {a['appearance_id']}: colour of "
                              f"{len(colour)} floats, expected {COLOUR_SIZE}")
        self.execute(
            """INSERT INTO appearances (appearance_id, camera_id, track_id, class_name, first_ms,
                   last_ms, first_seen, best_ms, x1, y1, x2, y2, upper_colour, lower_colour,
                   body_colour, heading, colour, embedding, embedding_model, crop_jpeg)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (appearance_id) DO UPDATE SET
                   last_ms = GREATEST(appearances.last_ms, excluded.last_ms),
                   heading = CASE WHEN excluded.last_ms >= appearances.last_ms
                                  THEN excluded.heading ELSE appearances.heading END, """
            + ", ".join(f"{column} = CASE WHEN {_LARGER_CROP} THEN excluded.{column} "
                        f"ELSE appearances.{column} END" for column in _BEST_CROP_COLUMNS),
            (a["appearance_id"], a["camera_id"], a["track_id"], a["class_name"],
             a["first_seen_ms"], a["last_seen_ms"], _ts(a["first_seen_ms"]), a["best_ms"],
             a["x1"], a["y1"], a["x2"], a["y2"], a.get("upper_colour"), a.get("lower_colour"),
             a.get("body_colour"), a.get("heading"),
             embedding_bytes(colour) if colour else None,
             embedding_bytes(embedding) if embedding else None,
             a.get("embedding_model"), a.get("crop_jpeg")))

    APPEARANCE_COLUMNS = ("appearance_id", "camera_id", "track_id", "class_name", "first_ms",
                          "last_ms", "best_ms", "x1", "y1", "x2", "y2", "upper_colour",
                          "lower_colour", "body_colour", "heading", "embedding_model")

    def appearances(self, *, class_name: str | None = None, cameras: Iterable[str] | None = None,
                    since_ms: int | None = None, until_ms: int | None = None,
                    colours: dict[str, str] | None = None, appearance_ids=None,
                    vectors: bool = False, crops: bool = False) -> list[dict]:
        """Tracks seen (overlapping ``since_ms``..``until_ms``) matching the filters;
        ``colours``: {"upper"|"lower"|"body": name}. With ``vectors``, rows carry ``colour``
        and ``embedding`` bytes; with ``crops``, ``crop_jpeg``."""
        where, params = ["colour IS NOT NULL"], []
        if class_name:
            where.append("class_name = %s"); params.append(class_name)
        if cameras is not None:
            cameras = list(cameras)
            if not cameras:
                return []
            where.append(f"camera_id IN ({', '.join(['%s'] * len(cameras))})"); params += cameras
        if since_ms is not None:
            where.append("last_ms >= %s"); params.append(int(since_ms))
        if until_ms is not None:
            where.append("first_ms <= %s"); params.append(int(until_ms))
        for part, name in (colours or {}).items():
            where.append(f"{part}_colour = %s"); params.append(name)
        if appearance_ids is not None:
            ids = list(appearance_ids)
            if not ids:
                return []
            where.append(f"appearance_id IN ({', '.join(['%s'] * len(ids))})"); params += ids
        columns = list(self.APPEARANCE_COLUMNS) + (["colour", "embedding"] if vectors else []) \
            + (["crop_jpeg"] if crops else [])
        rows = self.query(f"SELECT {', '.join(columns)} FROM appearances WHERE "
                          f"{' AND '.join(where)} ORDER BY first_ms", params)
        return [dict(zip(columns, row)) for row in rows]

    def track_appearance(self, camera_id: str, track_id: int) -> str | None:
        """The appearance id of a camera's track (its latest, if the id was reused)."""
        rows = self.query("SELECT appearance_id FROM appearances WHERE camera_id = %s AND "
                          "track_id = %s ORDER BY first_ms DESC LIMIT 1", (camera_id, int(track_id)))
        return rows[0][0] if rows else None

    def insert_watchlist_change(self, w: dict) -> None:
        """The audit trail of the watchlist: who changed what, when (no embeddings kept)."""
        self.execute(
            """INSERT INTO watchlist_audit (kind, subject_id, time_ms, change_time, changed_by, removed,
                   name, category, reason, photos) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (kind, subject_id, time_ms) DO NOTHING""",
            (w["kind"], w["id"], w["time_ms"], _ts(w["time_ms"]), w["added_by"], w["removed"],
             w.get("name"), w["category"], w.get("reason"), len(w.get("embeddings") or [])))

    def subject_path(self, subject_id: str) -> list[tuple]:
        return self.query("SELECT sighting_time, camera_id, score, track_id, alert_id "
                          "FROM subject_paths WHERE subject_id = %s ORDER BY time_ms", (subject_id,))

    def reject(self, topic: str, partition: int, offset: int, reason: str, payload: bytes | None) -> None:
        self.execute(
            """INSERT INTO sink_rejects (topic, kafka_partition, kafka_offset, reason, payload,
                                        rejected_ms)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING""",
            (topic, partition, offset, reason, payload, int(time.time() * 1000)))

    # -- personal data: retention and access audit ----------------------------------------------
    def audit_access(self, actor: str, action: str, target: str, detail: str | None = None) -> None:
        """One search or evidence view: who, what, when. Commits."""
        self.execute("INSERT INTO access_audit (time_ms, actor, action, target, detail) "
                     "VALUES (%s, %s, %s, %s, %s)",
                     (int(time.time() * 1000), actor, action, target, detail))
        self.commit()

    def access_log(self, since_ms: int = 0) -> list[tuple]:
        return self.query("SELECT time_ms, actor, action, target, detail FROM access_audit "
                          "WHERE time_ms >= %s ORDER BY time_ms", (since_ms,))

    def delete_expired(self, retention, unmatched_embeddings_days: float,
                       now_ms: int | None = None) -> dict[str, int]:
        """Delete every kind of personal data older than its retention (``retention``: the
        config's ``store.retention``). Commits; returns the rows deleted per kind."""
        now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
        cutoff = lambda days: now_ms - int(days * 86_400_000)
        alerts_cut = cutoff(retention.alerts_days)
        statements = {
            "unmatched_embeddings": ("DELETE FROM face_embeddings WHERE matched_subject IS NULL "
                                     "AND time_ms < %s", (cutoff(unmatched_embeddings_days),)),
            "matched_embeddings": ("DELETE FROM face_embeddings WHERE matched_subject IS NOT NULL "
                                   "AND time_ms < %s", (cutoff(retention.matched_embeddings_days),)),
            "appearances": ("DELETE FROM appearances WHERE last_ms < %s",
                            (cutoff(unmatched_embeddings_days),)),
            "sightings": ("DELETE FROM sightings WHERE time_ms < %s",
                          (cutoff(retention.sightings_days),)),
            "evidence": ("DELETE FROM alert_evidence WHERE alert_id IN (SELECT alert_id FROM "
                         "alerts WHERE time_ms < %s) OR alert_id NOT IN (SELECT alert_id FROM alerts)",
                         (cutoff(min(retention.evidence_days, retention.alerts_days)),)),
            "alert_actions": ("DELETE FROM alert_actions WHERE alert_id IN (SELECT alert_id FROM "
                              "alerts WHERE time_ms < %s)", (alerts_cut,)),
            "alerts": ("DELETE FROM alerts WHERE time_ms < %s", (alerts_cut,)),
            "frame_analyses": ("DELETE FROM frame_analyses WHERE capture_ms < %s",
                               (cutoff(retention.frame_analyses_days),)),
            "vehicle_plates": ("DELETE FROM vehicle_plates WHERE last_ms < %s",
                               (cutoff(retention.vehicle_plates_days),)),
            "sink_rejects": ("DELETE FROM sink_rejects WHERE rejected_ms IS NULL OR rejected_ms < %s",
                             (cutoff(retention.sink_rejects_days),)),
            "access_audit": ("DELETE FROM access_audit WHERE time_ms < %s",
                             (cutoff(retention.access_audit_days),)),
        }
        deleted = {}
        for kind, (statement, params) in statements.items():
            deleted[kind] = max(int(self.execute(statement, params).rowcount), 0)
        self.commit()
        return deleted

    # -- what the console and the report read -------------------------------------------------
    ALERT_COLUMNS = ("alert_id", "type", "severity", "camera_id", "time_ms", "subject", "score",
                     "track_id", "evidence", "has_evidence_jpeg", "evidence_ref", "clip_ref")

    def alert(self, alert_id: str) -> dict | None:
        rows = self.query(f"SELECT {', '.join(self.ALERT_COLUMNS)} FROM alerts WHERE alert_id = %s",
                          (alert_id,))
        return dict(zip(self.ALERT_COLUMNS, rows[0])) if rows else None

    def alerts_since(self, since_ms: int, limit: int) -> list[dict]:
        """The newest alerts at or after ``since_ms``, newest first."""
        rows = self.query(f"SELECT {', '.join(self.ALERT_COLUMNS)} FROM alerts WHERE time_ms >= %s "
                          "ORDER BY time_ms DESC LIMIT %s", (since_ms, limit))
        return [dict(zip(self.ALERT_COLUMNS, r)) for r in rows]

    def sightings_of(self, subject_id: str) -> list[tuple]:
        """(subject_id, kind, camera_id, time_ms, score, track_id, alert_id), oldest first."""
        return self.query("SELECT subject_id, kind, camera_id, time_ms, score, track_id, alert_id "
                          "FROM sightings WHERE subject_id = %s ORDER BY time_ms", (subject_id,))

    def cameras_seen(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT camera_id FROM frame_analyses")]

    def camera_activity(self, camera_id: str, since_ms: int, liveness_types: tuple[str, str]):
        """(last frame (sequence, capture_ms, processed_ms) or None, (frames processed since
        ``since_ms``, their first capture_ms), latest liveness alert (type, time_ms) or None)."""
        last = self.query("SELECT sequence, capture_ms, processed_ms FROM frame_analyses "
                          "WHERE camera_id = %s ORDER BY sequence DESC LIMIT 1", (camera_id,))
        recent = self.query("SELECT COUNT(*), MIN(capture_ms) FROM frame_analyses "
                            "WHERE camera_id = %s AND processed_ms >= %s", (camera_id, since_ms))[0]
        liveness = self.query("SELECT type, time_ms FROM alerts WHERE camera_id = %s AND type IN "
                              "(%s, %s) ORDER BY time_ms DESC LIMIT 1", (camera_id, *liveness_types))
        return (last[0] if last else None, recent, liveness[0] if liveness else None)

    def busiest(self, limit: int = 3) -> list[tuple]:
        """(camera_id, class_name, most objects of the class seen in one frame), the ``limit``
        largest over all windows."""
        return self.query("SELECT camera_id, class_name, MAX(max_in_frame) FROM aggregate_counts "
                          "GROUP BY camera_id, class_name ORDER BY 3 DESC LIMIT %s", (limit,))

    def counts(self) -> dict[str, int]:
        return {t: self.query(f"SELECT COUNT(*) FROM {t}")[0][0]
                for t in ("alerts", "aggregates", "frame_analyses", "sightings", "sink_rejects")}
