-- Checkpoint diff: every target (class or unit) of two runs, matched by target_id.
-- Parameters: $from_run, $to_run, $threshold (smallest |probe rate shift| to list).
--
-- change, for units (their verdict is by intervention, see target_summary):
--   "new spurious"  the verdict became spurious (from core, uncertain, or no verdict)
--   "resolved"      spurious -> core
--   "changed"       any other change (e.g. spurious -> uncertain: not confirmed resolved)
-- for classes (whether the class's explanation shows its object; not a shortcut verdict:
-- class shortcuts that appeared or vanished are dxray/catalog/sql/shortcut_diff.sql's):
--   "changed"       object_in_explanation differs
-- for both: "unchanged"; "added"/"removed" (the target is in only one of the two runs)
WITH
before AS (SELECT * FROM target_summary WHERE run_id = $from_run),
after AS (SELECT * FROM target_summary WHERE run_id = $to_run),
rates AS (
    SELECT target_id, probe, a.rate AS rate_before, b.rate AS rate_after,
           b.rate - a.rate AS shift
    FROM (SELECT * FROM probe_rates WHERE run_id = $from_run) AS a
    FULL JOIN (SELECT * FROM probe_rates WHERE run_id = $to_run) AS b USING (target_id, probe)
),
shifts AS (
    SELECT target_id,
           list({'probe': probe, 'before': rate_before, 'after': rate_after, 'shift': shift}
                ORDER BY abs(shift) DESC, probe) AS probe_shifts
    FROM rates
    WHERE abs(shift) >= $threshold
    GROUP BY target_id
)
SELECT
    target_id,
    coalesce(after.kind, before.kind) AS kind,
    coalesce(after.class_index, before.class_index) AS class_index,
    coalesce(after.class_name, before.class_name) AS class_name,
    coalesce(after.layer, before.layer) AS layer,
    coalesce(after.channel, before.channel) AS channel,
    coalesce(after.unit, before.unit) AS unit,
    before.verdict AS verdict_before,
    after.verdict AS verdict_after,
    before.object_in_explanation AS object_before,
    after.object_in_explanation AS object_after,
    CASE
        WHEN before.run_id IS NULL THEN 'added'
        WHEN after.run_id IS NULL THEN 'removed'
        WHEN after.kind = 'class' THEN
            CASE WHEN before.object_in_explanation IS NOT DISTINCT FROM
                      after.object_in_explanation THEN 'unchanged' ELSE 'changed' END
        WHEN before.verdict IS NOT DISTINCT FROM after.verdict THEN 'unchanged'
        WHEN after.verdict = 'spurious' THEN 'new spurious'
        WHEN before.verdict = 'spurious' AND after.verdict = 'core' THEN 'resolved'
        ELSE 'changed'
    END AS change,
    before.spurious_fraction AS spurious_fraction_before,
    after.spurious_fraction AS spurious_fraction_after,
    before.object_shown_fraction AS object_shown_fraction_before,
    after.object_shown_fraction AS object_shown_fraction_after,
    before.mean_kept AS kept_before,
    after.mean_kept AS kept_after,
    before.mean_probability AS probability_before,
    after.mean_probability AS probability_after,
    after.mean_probability - before.mean_probability AS probability_shift,
    before.mean_presence AS presence_before,
    after.mean_presence AS presence_after,
    shifts.probe_shifts
FROM before
FULL JOIN after USING (target_id)
LEFT JOIN shifts USING (target_id)
ORDER BY kind, class_index NULLS LAST, target_id;
