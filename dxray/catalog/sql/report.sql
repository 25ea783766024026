-- Queries behind the HTML bias report (dxray.report). Each starts with "-- name: X";
-- the parameter $run_id is the run being reported.

-- name: latest_run
-- The run to report when none is named: of the runs with results, the one that started last
-- (its runs row; for a run without one, its first result).
SELECT a.run_id
FROM (SELECT run_id, min(created_at) AS first_result FROM audit GROUP BY run_id) AS a
LEFT JOIN runs AS r USING (run_id)
ORDER BY coalesce(r.created_at, a.first_result) DESC, a.run_id DESC
LIMIT 1;

-- name: run
SELECT run_id, name, status, created_at, updated_at, generator, classifier,
       classifier_sha256, segmenter, dxray_version, versions_json, num_targets,
       wall_seconds, error
FROM runs
WHERE run_id = $run_id;

-- name: counts
-- Headline numbers of the explanations. Class explanations: whether the image optimised for
-- the class shows its object (not a shortcut verdict: the class-shortcut test's findings are
-- `class_shortcuts`); units: their verdict by intervention.
SELECT
    count(*) FILTER (WHERE kind = 'class') AS classes,
    count(*) FILTER (WHERE kind = 'class' AND object_in_explanation IS NOT NULL)
        AS judged_classes,
    count(*) FILTER (WHERE object_in_explanation = 'shown') AS object_shown_classes,
    count(*) FILTER (WHERE object_in_explanation = 'absent') AS object_absent_classes,
    count(*) FILTER (WHERE object_in_explanation = 'unclear') AS object_unclear_classes,
    count(*) FILTER (WHERE kind = 'unit') AS units,
    count(*) FILTER (WHERE kind = 'unit' AND verdict = 'spurious') AS spurious_units,
    coalesce(sum(seeds), 0) AS seeds,
    coalesce(sum(failed), 0) AS failed_seeds,
    coalesce(sum(judged), 0) AS judged_seeds
FROM target_summary
WHERE run_id = $run_id;

-- name: targets
-- Targets in report order: spurious units first (the share of their activation kept,
-- largest first), then by class index.
SELECT *
FROM target_summary
WHERE run_id = $run_id
ORDER BY spurious_fraction DESC NULLS LAST, mean_kept DESC NULLS LAST, class_index NULLS LAST,
         target_id;

-- name: seeds
SELECT target_id, seed, status, error, ok, attempts, probability, presence, verdict,
       judged_by, kept, activation, activation_without_objects, object_query, words, steps
FROM audit
WHERE run_id = $run_id
ORDER BY target_id, seed;

-- name: images
-- The newest image of each (target, seed).
SELECT target_id, seed, png, mask_png
FROM images
WHERE run_id = $run_id
QUALIFY row_number() OVER (PARTITION BY target_id, seed ORDER BY created_at DESC) = 1;

-- name: probes
SELECT target_id, probe, rate, mean_presence, images
FROM probe_rates
WHERE run_id = $run_id
ORDER BY probe;

-- name: shortcuts
-- The class-shortcut test: one row per class and attribute (findings first).
SELECT *
FROM class_shortcuts
WHERE run_id = $run_id
ORDER BY finding DESC, lift DESC NULLS LAST, class_index, attribute;

-- name: shortcut_skipped
-- Vocabulary entries the test could not use, and why.
SELECT attribute, note
FROM shortcuts
WHERE run_id = $run_id AND method = 'vocabulary'
ORDER BY attribute;

-- name: shortcut_renders
-- Every usable render of the test (no image data), for picking the evidence to show.
SELECT render_id, variant, scene, overlay, class_index, seed, status, logits, object_presence
FROM shortcut_images
WHERE run_id = $run_id AND status = 'kept'
ORDER BY variant, scene, overlay NULLS FIRST, class_index NULLS FIRST, seed;

-- name: shortcut_pngs
SELECT render_id, png
FROM shortcut_images
WHERE run_id = $run_id AND list_contains($ids, render_id);

-- name: shortcut_explanations
-- Each class's object-free explanation: the pool images it chose (one row per class; the
-- chosen list is the same for every attribute of a class).
SELECT class_index, any_value(class_name) AS class_name, any_value(chosen) AS chosen,
       any_value(mean_z) AS mean_z,
       list(attribute ORDER BY rate DESC) FILTER (WHERE candidate) AS candidates
FROM shortcut_candidates
WHERE run_id = $run_id
GROUP BY class_index
ORDER BY class_index;

-- name: shortcut_pool_pngs
SELECT render_id, png, words, logits
FROM shortcut_pool
WHERE run_id = $run_id AND list_contains($ids, render_id);
