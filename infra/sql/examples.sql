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
