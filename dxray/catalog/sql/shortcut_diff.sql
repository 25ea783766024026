-- How the class shortcuts of two runs differ (dxray.catalog.diff). Parameters: $from_run
-- (before) and $to_run (after). One row per (class, attribute) that is a finding in either
-- run, matched by class name (checkpoints of one model share their classes):
--   appeared: a finding after, not before; vanished: before, not after; kept: both.
WITH a AS (
    SELECT class_index, class_name, attribute, lift, low, high, finding
    FROM class_shortcuts WHERE run_id = $from_run
),
b AS (
    SELECT class_index, class_name, attribute, lift, low, high, finding
    FROM class_shortcuts WHERE run_id = $to_run
)
SELECT
    coalesce(b.class_index, a.class_index) AS class_index,
    coalesce(b.class_name, a.class_name) AS class_name,
    coalesce(b.attribute, a.attribute) AS attribute,
    a.lift AS lift_before, a.low AS low_before, a.high AS high_before,
    b.lift AS lift_after, b.low AS low_after, b.high AS high_after,
    coalesce(a.finding, false) AS finding_before,
    coalesce(b.finding, false) AS finding_after,
    CASE
        WHEN coalesce(a.finding, false) AND coalesce(b.finding, false) THEN 'kept'
        WHEN coalesce(b.finding, false) THEN 'appeared'
        ELSE 'vanished'
    END AS change
FROM a
FULL OUTER JOIN b ON a.class_name = b.class_name AND a.attribute = b.attribute
WHERE coalesce(a.finding, false) OR coalesce(b.finding, false)
ORDER BY
    CASE change WHEN 'appeared' THEN 0 WHEN 'vanished' THEN 1 ELSE 2 END,
    class_index, attribute;
