-- What the release gate reads of a run (dxray.catalog.gate). Each query starts with
-- "-- name: X"; the parameter $run_id is the run read.

-- name: run
SELECT run_id, name, status, classifier, classifier_sha256, spec_yaml, created_at, error
FROM runs
WHERE run_id = $run_id;

-- name: known_runs
-- For the message that names an unknown run: the newest first.
SELECT run_id FROM runs ORDER BY created_at DESC, run_id;

-- name: shortcuts
-- Every (class, attribute) of the shortcut test's latest scoring: the object-free lift, its
-- interval, and whether it is a finding.
SELECT class_index, class_name, attribute, kind, lift, low, high, images, finding, note
FROM class_shortcuts
WHERE run_id = $run_id
ORDER BY class_index, attribute;

-- name: units
-- Every audited unit: its verdict over the seeds (the majority; a tie is "uncertain").
SELECT target_id, class_index, class_name, layer, channel, verdict,
       seeds, judged, n_core, n_spurious, n_uncertain
FROM unit_summary
WHERE run_id = $run_id
ORDER BY layer, channel, class_index;

-- name: classes
-- The classes a run's targets name (class targets, and the class each ranked unit was for).
SELECT DISTINCT class_index, class_name
FROM explanations
WHERE run_id = $run_id AND class_index IS NOT NULL AND class_name IS NOT NULL
ORDER BY class_index;
