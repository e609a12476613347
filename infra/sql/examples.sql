-- Example queries for analysts. They run unchanged on DuckDB and PostgreSQL.

-- Busiest cameras per hour: people and vehicles seen (distinct tracks) per camera and hour.
SELECT c.camera_id,
       date_trunc('hour', a.window_start)                 AS hour,
       SUM(CASE WHEN c.class_name = 'person' THEN c.unique_tracks ELSE 0 END) AS people,
       SUM(CASE WHEN c.class_name IN ('car', 'motorcycle', 'bus', 'truck', 'bicycle')
                THEN c.unique_tracks ELSE 0 END)           AS vehicles,
       MAX(CASE WHEN c.class_name = 'person' THEN c.max_in_frame ELSE 0 END) AS most_people_at_once
FROM aggregate_counts c
JOIN aggregates a USING (camera_id, window_start_ms, window_end_ms)
GROUP BY c.camera_id, date_trunc('hour', a.window_start)
ORDER BY hour DESC, people DESC;

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
