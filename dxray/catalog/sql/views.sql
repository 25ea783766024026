-- The standard views of a dxray catalog.
--
-- dxray.catalog.connect() registers one Arrow dataset per table (raw_runs, raw_explanations,
-- raw_verdicts, raw_images; empty but typed when a table has no files yet) and then runs this
-- file. Tables are append-only: a retried target adds rows, and the views below decide which
-- row counts. Statements are separated by semicolons; comments are ignored.

-- One row per run: its latest row (a run writes "running" at start, then "finished"/"failed").
CREATE OR REPLACE VIEW runs AS
SELECT *
FROM raw_runs
QUALIFY row_number() OVER (
    PARTITION BY run_id ORDER BY updated_at DESC, (status <> 'running') DESC
) = 1;

-- Every row ever written, retries and resumed work included: a failed attempt stays visible.
CREATE OR REPLACE VIEW runs_log AS SELECT * FROM raw_runs;
CREATE OR REPLACE VIEW explanations_log AS SELECT * FROM raw_explanations;
CREATE OR REPLACE VIEW verdicts_log AS SELECT * FROM raw_verdicts;
CREATE OR REPLACE VIEW images_log AS SELECT * FROM raw_images;

-- The current rows: exactly one per (run, target, seed), whatever a resume rewrote (a
-- retried target, or the rows of a file lost or quarantined and recomputed).
-- explanations: the best attempt (a result over "nan" over "error", then the newest);
-- verdicts and images: the newest.
CREATE OR REPLACE VIEW explanations AS
SELECT *
FROM raw_explanations
QUALIFY row_number() OVER (
    PARTITION BY run_id, target_id, seed
    ORDER BY CASE status WHEN 'error' THEN 2 WHEN 'nan' THEN 1 ELSE 0 END, created_at DESC
) = 1;

CREATE OR REPLACE VIEW verdicts AS
SELECT *
FROM raw_verdicts
QUALIFY row_number() OVER (PARTITION BY run_id, target_id, seed ORDER BY created_at DESC) = 1;

CREATE OR REPLACE VIEW images AS
SELECT *
FROM raw_images
QUALIFY row_number() OVER (PARTITION BY run_id, target_id, seed ORDER BY created_at DESC) = 1;

-- One row per (run, target, seed): the best attempt (a result over "nan" over "error", then
-- the newest), its latest verdict, and whether an image was stored. `ok` marks a usable
-- explanation (status "converged" or "max_iterations"); summaries count only those.
CREATE OR REPLACE VIEW audit AS
WITH best AS (
    SELECT e.* EXCLUDE (prompt_vectors, vector_shape), n.attempts
    FROM explanations AS e
    JOIN (
        SELECT run_id, target_id, seed, count(*) AS attempts
        FROM raw_explanations GROUP BY ALL
    ) AS n USING (run_id, target_id, seed)
),
latest_verdict AS (SELECT * FROM verdicts),
stored AS (SELECT run_id, target_id, seed FROM images)
SELECT
    b.run_id, b.target_id, b.kind, b.class_index, b.class_name, b.layer, b.channel,
    b.objective, b.seed,
    b.status, b.error, b.status NOT IN ('error', 'nan') AS ok, b.attempts,
    b.steps, b.objective_value, b.probability, b.converged, b.words, b.seconds, b.worker,
    b.created_at,
    v.object_query, v.presence, v.verdict, v.judged_by, v.kept,
    v.activation, v.activation_without_objects, v.probe_scores,
    s.run_id IS NOT NULL AS has_image
FROM best AS b
LEFT JOIN latest_verdict AS v USING (run_id, target_id, seed)
LEFT JOIN stored AS s USING (run_id, target_id, seed);

-- Long form of the attribute probes: one row per usable image and probe.
CREATE OR REPLACE VIEW probe_scores AS
SELECT run_id, target_id, kind, class_index, class_name, seed,
       entry.key AS probe, entry.value AS presence
FROM (
    SELECT *, unnest(map_entries(probe_scores)) AS entry
    FROM audit
    WHERE ok AND probe_scores IS NOT NULL
);

-- Per run, target and probe: the fraction of images in which the probe is present
-- (presence >= 0.5, the same cut as the core verdict), and its mean presence.
CREATE OR REPLACE VIEW probe_rates AS
SELECT
    run_id, target_id,
    any_value(kind) AS kind, any_value(class_index) AS class_index,
    any_value(class_name) AS class_name,
    probe,
    count(*) AS images,
    avg(CASE WHEN presence >= 0.5 THEN 1.0 ELSE 0.0 END) AS rate,
    avg(presence) AS mean_presence
FROM probe_scores
GROUP BY run_id, target_id, probe;

-- The unit-shortcut test (docs/SHORTCUTS.md), latest scoring: per class unit, its mean on the
-- factors' object-free images vs on the class's object, and the verdict.
--   SELECT class_name, unit, factor, margin, low, high FROM unit_shortcuts WHERE verdict = 'spurious'
CREATE OR REPLACE VIEW unit_shortcuts AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(score_id) OVER (PARTITION BY run_id) AS latest FROM raw_unit_shortcuts)
WHERE score_id IS NOT DISTINCT FROM latest;

-- Per run and target (class or unit), over its seeds. Classes and units answer different
-- questions, so each kind fills its own columns and leaves the other's null:
--   units   `verdict`: core / spurious / uncertain. For a unit audited for a class in a run
--           with the unit-shortcut test (`unit_shortcuts`, docs/SHORTCUTS.md), the test's:
--           spurious when an attribute with no object drives it more than its class's object
--           (`unit_factor`, `unit_margin` and its interval `unit_low`..`unit_high`,
--           `factor_response`, `object_response`); `judged_by` = 'unit test'. Otherwise
--           (`judged_by` = 'intervention') the intervention's: remove the objects from the
--           unit's image, measure it again, spurious when it keeps at least judge.keep, the
--           majority of the judged seeds with a tie -> "uncertain" (dxray.judge.aggregate).
--           The intervention's majority is always in `intervention_verdict`;
--           `spurious_fraction` = its spurious seeds / judged seeds; `mean_activation`,
--           `mean_activation_without_objects`, `mean_kept` (share kept).
--   classes `object_in_explanation`: does the class's explanation (the image optimised for
--           the class) show the class's object? 'shown' / 'absent' / 'unclear' (majority of
--           the judged seeds, tie -> 'unclear'); `object_shown_fraction`. This is not a
--           shortcut verdict: a class that relies on a shortcut usually still paints its
--           object. Shortcuts are the class-shortcut test's (`class_shortcuts`).
-- `unit` is "layer:channel" for units. `top_probes`: up to three probes with the highest
-- non-zero rate (ties by name), as [{probe, rate}]; null when none is present.
CREATE OR REPLACE VIEW target_summary AS
WITH counts AS (
    SELECT
        run_id, target_id,
        any_value(kind) AS kind,
        any_value(class_index) AS class_index,
        any_value(class_name) AS class_name,
        any_value(layer) AS layer,
        any_value(channel) AS channel,
        any_value(objective) AS objective,
        any_value(object_query) AS object_query,
        count(*) AS seeds,
        count(*) FILTER (WHERE NOT ok) AS failed,
        count(verdict) FILTER (WHERE ok) AS judged,
        count(*) FILTER (WHERE ok AND verdict = 'core') AS n_core,
        count(*) FILTER (WHERE ok AND verdict = 'spurious') AS n_spurious,
        count(*) FILTER (WHERE ok AND verdict = 'uncertain') AS n_uncertain,
        avg(probability) FILTER (WHERE ok AND NOT isnan(probability)) AS mean_probability,
        avg(presence) FILTER (WHERE ok) AS mean_presence,
        avg(activation) FILTER (WHERE ok) AS mean_activation,
        avg(activation_without_objects) FILTER (WHERE ok) AS mean_activation_without_objects,
        avg(kept) FILTER (WHERE ok) AS mean_kept
    FROM audit
    GROUP BY run_id, target_id
),
top AS (
    SELECT
        run_id, target_id,
        list({'probe': probe, 'rate': rate} ORDER BY rate DESC, probe)[1:3] AS top_probes
    FROM probe_rates
    WHERE rate > 0
    GROUP BY run_id, target_id
),
majority AS (
    SELECT
        *,
        CASE
            WHEN judged = 0 THEN NULL
            WHEN n_core > greatest(n_spurious, n_uncertain) THEN 'core'
            WHEN n_spurious > greatest(n_core, n_uncertain) THEN 'spurious'
            ELSE 'uncertain'
        END AS majority
    FROM counts
)
SELECT
    c.* EXCLUDE (majority),
    CASE WHEN c.kind = 'unit' THEN c.layer || ':' || c.channel END AS unit,
    CASE WHEN c.kind = 'unit' THEN coalesce(us.verdict, c.majority) END AS verdict,
    CASE WHEN c.kind = 'unit' THEN
        CASE WHEN us.verdict IS NOT NULL THEN 'unit test'
             WHEN c.majority IS NOT NULL THEN 'intervention' END
    END AS judged_by,
    CASE WHEN c.kind = 'unit' THEN c.majority END AS intervention_verdict,
    us.factor AS unit_factor, us.margin AS unit_margin, us.low AS unit_low,
    us.high AS unit_high, us.factor_response, us.object_response,
    CASE WHEN c.kind = 'unit' AND c.judged > 0 THEN c.n_spurious / c.judged END
        AS spurious_fraction,
    CASE WHEN c.kind = 'class' THEN
        CASE c.majority WHEN 'core' THEN 'shown' WHEN 'spurious' THEN 'absent'
                        WHEN 'uncertain' THEN 'unclear' END
    END AS object_in_explanation,
    CASE WHEN c.kind = 'class' AND c.judged > 0 THEN c.n_core / c.judged END
        AS object_shown_fraction,
    t.top_probes
FROM majority AS c
LEFT JOIN top AS t USING (run_id, target_id)
LEFT JOIN unit_shortcuts AS us
    ON c.kind = 'unit' AND us.run_id = c.run_id AND us.class_index = c.class_index
    AND us.unit = c.layer || ':' || c.channel;

CREATE OR REPLACE VIEW unit_summary AS
SELECT * EXCLUDE (object_in_explanation, object_shown_fraction)
FROM target_summary
WHERE kind = 'unit';

-- Human labels of the audited units (the spec's unit CSV), the latest written per unit, and
-- each beside the run's verdict on that unit: "where does dxray disagree with the crowd".
CREATE OR REPLACE VIEW labels AS
SELECT *
FROM raw_labels
QUALIFY row_number() OVER (
    PARTITION BY run_id, class_index, layer, channel ORDER BY created_at DESC
) = 1;

CREATE OR REPLACE VIEW label_agreement AS
SELECT
    l.run_id, l.class_index, l.class_name, l.layer, l.channel, l.rank, l.source,
    l.label, l.votes_main_object, l.votes_separate_object, l.votes_background, l.answers,
    u.target_id, u.verdict, u.judged, u.spurious_fraction,
    CASE WHEN u.verdict IS NULL THEN NULL ELSE u.verdict = l.label END AS agree
FROM labels AS l
LEFT JOIN unit_summary AS u
    ON u.run_id = l.run_id AND u.class_index = l.class_index
    AND u.layer = l.layer AND u.channel = l.channel;

-- The class-shortcut test (docs/SHORTCUTS.md). One row per rendered image: its latest usable
-- attempt (a retried render adds a row; an error counts only when nothing else exists).
CREATE OR REPLACE VIEW shortcut_images AS
SELECT *
FROM raw_shortcut_images
QUALIFY row_number() OVER (
    PARTITION BY run_id, render_id ORDER BY (status = 'error'), created_at DESC
) = 1;

-- Lifts per (class, attribute, method) from the latest scoring of each run.
CREATE OR REPLACE VIEW shortcuts AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(score_id) OVER (PARTITION BY run_id) AS latest FROM raw_shortcuts)
WHERE score_id IS NOT DISTINCT FROM latest;

-- Object-free explanations: the pool's images (latest usable attempt of each) and, from the
-- latest scoring, what each class's top images show per attribute.
CREATE OR REPLACE VIEW shortcut_pool AS
SELECT *
FROM raw_shortcut_pool
QUALIFY row_number() OVER (
    PARTITION BY run_id, render_id ORDER BY (status = 'error'), created_at DESC
) = 1;

CREATE OR REPLACE VIEW shortcut_candidates AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(score_id) OVER (PARTITION BY run_id) AS latest FROM raw_shortcut_candidates)
WHERE score_id IS NOT DISTINCT FROM latest;

-- Per run and class: what its explanation shows (see target_summary) and, from the
-- class-shortcut test, the attributes it relies on without its object. `shortcuts`: the
-- findings' attributes, largest lift first (empty list: tested, none found; null: the run has
-- no shortcut test). `relies_on_shortcut`: at least one finding (null when not tested).
CREATE OR REPLACE VIEW class_summary AS
WITH tested AS (
    SELECT run_id, class_index,
           list(attribute ORDER BY lift DESC, attribute) FILTER (WHERE finding) AS found
    FROM shortcuts
    WHERE method = 'object_free' AND class_index IS NOT NULL
    GROUP BY run_id, class_index
)
SELECT
    s.run_id, s.target_id, s.class_index, s.class_name, s.objective, s.object_query,
    s.seeds, s.failed, s.judged,
    s.n_core AS n_object_shown, s.n_spurious AS n_object_absent, s.n_uncertain AS n_unclear,
    s.object_in_explanation, s.object_shown_fraction,
    s.mean_probability, s.mean_presence, s.top_probes,
    CASE WHEN t.run_id IS NOT NULL THEN coalesce(t.found, []) END AS shortcuts,
    CASE WHEN t.run_id IS NOT NULL THEN len(coalesce(t.found, [])) > 0 END
        AS relies_on_shortcut
FROM target_summary AS s
LEFT JOIN tested AS t USING (run_id, class_index)
WHERE s.kind = 'class';

-- The bias report in one view: per class and attribute, the object-free lift (does the class
-- fire on the attribute without its object?) and its interval, whether that is a finding,
-- what the attribute adds beside the class's own object, whether the class's object-free
-- explanation singled it out (`candidate`; `confirmed`: a candidate that is also a finding),
-- and whether the class's own explanation shows its object (`object_in_explanation`).
--   SELECT class_name, attribute, lift FROM class_shortcuts WHERE finding
CREATE OR REPLACE VIEW class_shortcuts AS
WITH beside AS (
    SELECT run_id, class_index, attribute,
           lift AS with_object_lift, low AS with_object_low, high AS with_object_high,
           images AS with_object_images
    FROM shortcuts
    WHERE method = 'with_object'
)
SELECT
    f.run_id, f.class_index, f.class_name, f.attribute, f.kind,
    f.lift, f.low, f.high, f.images, f.rendered,
    f.dropped_object, f.dropped_attribute, f.finding, f.note,
    b.with_object_lift, b.with_object_low, b.with_object_high, b.with_object_images,
    e.candidate, e.rate AS explanation_rate, e.pool_rate, e.pool_lift AS explanation_pool_lift,
    coalesce(e.candidate AND f.finding, false) AS confirmed,
    c.object_in_explanation, c.object_shown_fraction, c.mean_probability, c.top_probes
FROM shortcuts AS f
LEFT JOIN beside AS b USING (run_id, class_index, attribute)
LEFT JOIN shortcut_candidates AS e USING (run_id, class_index, attribute)
LEFT JOIN class_summary AS c USING (run_id, class_index)
WHERE f.method = 'object_free' AND f.class_index IS NOT NULL;


-- `dxray eval` results (docs/EVALUATION.md): the latest evaluation of each evaluated run.
CREATE OR REPLACE VIEW eval_metrics AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(eval_id) OVER (PARTITION BY run_id) AS latest FROM raw_eval_metrics)
WHERE eval_id IS NOT DISTINCT FROM latest;

CREATE OR REPLACE VIEW eval_neurons AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(eval_id) OVER (PARTITION BY run_id) AS latest FROM raw_eval_neurons)
WHERE eval_id IS NOT DISTINCT FROM latest;

CREATE OR REPLACE VIEW eval_classes AS
SELECT * EXCLUDE (latest)
FROM (SELECT *, max(eval_id) OVER (PARTITION BY run_id) AS latest FROM raw_eval_classes)
WHERE eval_id IS NOT DISTINCT FROM latest;
