"""The audit spec: what to audit, with which models, how hard, and where it runs.

An audit is one YAML file; `pipelines/toy.yaml` documents every field. `load_spec` reads it
into a frozen `AuditSpec` and checks every field on the way. An unknown key, a value of the
wrong type, a number out of range or a choice that does not exist raises `SpecError`, whose
message names the file, the field path and what is allowed:

    pipelines/toy.yaml: engine.iteratons: unknown key; allowed: iterations, lr, ...
    (did you mean 'iterations'?)

Typical use:

    spec = load_spec("pipelines/toy.yaml")
    spec = with_overrides(spec, **{"engine.iterations": 10, "ray.workers": 2})
    rows = expand_targets(spec, classifier.class_names, run_id)   # dxray.run.targets

Model sources are checked for form only. Whether a directory or hub id exists is for the
loaders to find out when the audit starts, so a spec written for a GPU cluster validates on a
laptop. Model paths are passed on as written (relative to the directory dxray runs from); the
unit CSV is relative to the spec file, because it belongs with the spec.

torch is imported only when an engine object is asked for (`EngineSpec.to_explain_config`,
`JudgeSpec.thresholds`), so loading and checking a spec stays instant.

Modules:
- model.py     the typed, frozen spec (`AuditSpec` and its sections), its YAML and hash, the
               engine and judge configs it turns into, `SpecError`;
- parse.py     `load_spec`, `with_overrides`, and the field-by-field validation (one strict
               checker, `dxray.yamlio`, serves specs and toy worlds);
- unit_csv.py  where the spec's unit CSV is and that it reads (the rows it adds to a run:
               `dxray.run.targets`).
"""
