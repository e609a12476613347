-- Example queries for analysts. They run unchanged on DuckDB and PostgreSQL.

-- Busiest cameras per hour, counted honestly.
-- One window length: each camera's tumbling windows (its shortest; the sliding windows are
-- longer and overlap, so they would count everybody several times). Distinct tracks are
-- never added up across windows: one person walking through two windows is two tracks there.
-- Per camera and hour: the most distinct people (and vehicles) seen within one window, and
-- the most people in one frame (peak at once). For distinct people over a whole hour, run the
-- job with job.window_ms: 3600000.
WITH tumbling AS (
    SELECT camera_id, MIN(window_end_ms - window_start_ms) AS window_ms
    FROM aggregates
    GROUP BY camera_id
), per_window AS (
    SELECT a.camera_id, a.window_start, t.window_ms,
           SUM(CASE WHEN c.class_name = 'person' THEN c.unique_tracks ELSE 0 END) AS people,
           SUM(CASE WHEN c.class_name IN ('car', 'motorcycle', 'bus', 'truck', 'bicycle')
                    THEN c.unique_tracks ELSE 0 END)                          AS vehicles,
           MAX(CASE WHEN c.class_name = 'person' THEN c.max_in_frame ELSE 0 END) AS people_at_once
    FROM aggregates a
    JOIN tumbling t ON t.camera_id = a.camera_id
                   AND a.window_end_ms - a.window_start_ms = t.window_ms
    LEFT JOIN aggregate_counts c ON c.camera_id = a.camera_id
                                AND c.window_start_ms = a.window_start_ms
                                AND c.window_end_ms = a.window_end_ms
    GROUP BY a.camera_id, a.window_start, t.window_ms
)
SELECT camera_id,
       date_trunc('hour', window_start) AS hour,
       MAX(window_ms) / 1000            AS window_s,
       COUNT(*)                         AS windows,
       MAX(people)                      AS most_people_in_a_window,
       MAX(vehicles)                    AS most_vehicles_in_a_window,
       MAX(people_at_once)              AS most_people_at_once
FROM per_window
GROUP BY camera_id, date_trunc('hour', window_start)
ORDER BY hour DESC, most_people_in_a_window DESC, camera_id;

-- Alerts per type per day.
SELECT CAST(alert_time AS DATE) AS day, type, severity, COUNT(*) AS alerts
FROM alerts
GROUP BY CAST(alert_time AS DATE), type, severity
ORDER BY day DESC, alerts DESC;

-- The latest alerts with where and why.
SELECT alert_time, type, severity, camera_id, subject, score, evidence
FROM alerts
ORDER BY time_ms DESC
LIMIT 50;

-- Open alerts (nobody acknowledged or dismissed them in the console), newest first.
SELECT alert_time, type, severity, camera_id, subject
FROM alert_status
WHERE action IS NULL
ORDER BY alert_time DESC;

-- How fast operators respond: median minutes from alert to first action, per alert type.
SELECT type, COUNT(*) AS handled,
       PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY response_ms) / 60000.0 AS median_minutes
FROM alert_status
WHERE action IS NOT NULL
GROUP BY type
ORDER BY median_minutes DESC;

-- Who acknowledged or dismissed what, and when (the console's audit trail).
SELECT action_time, actor, action, alert_id, note
FROM alert_actions
ORDER BY action_ms DESC
LIMIT 100;

-- A watchlist subject's path across camera sites, in time order.
SELECT sighting_time, camera_id, score, track_id, alert_id
FROM subject_paths
WHERE subject_id = 'W-7'
ORDER BY time_ms;
