"""How good are dxray's verdicts? Measured against a toy zoo's ground truth.

`dxray eval` (docs/EVALUATION.md) audits a toy world's classifier (or reads an audit already in
a catalog) and scores it against the zoo's measured truth (`dxray.toyworld.truth`):

- metrics.py   agreement between two labellings: accuracy, precision/recall, confusion;
- neurons.py   neuron level: each audited unit's verdict vs its core/spurious label;
- classes.py   class level: the contexts/cues the class's explanations carry (attribute
               probes, effect sizes) vs the classifier's measured reliance on them;
- images.py    how natural explanation images are: the oracle's reading, scene statistics;
- specs.py     the audits an evaluation runs, as specs (main audit, fixed release, probes);
- reads.py     what it reads from a catalog: runs, an audit's rows, stored images;
- baseline.py  DiffExplainer vs pixel-space activation maximisation on the same targets;
- labels.py    `dxray score`: a run's unit verdicts vs the human labels stored with it;
- scoring.py   one audit scored against the truth: agreement by judge, success, cost;
- shortcut_scoring.py  a run's class-shortcut test scored from the catalog, with its cost;
- results.py   the result (`EvalResult`): its rows, a metric's name (section, setting,
               judge, metric) and the catalog layout it is stored in, writing it;
- runner.py    the orchestration (the audits, in order; ablations);
- tables.py    the evaluation's tables, one function each (the HTML page's evaluation
               section, dxray/report/evaluation.py, lays them out too);
- printout.py  the tables as text for the terminal, and the headline line;
- sweep.py     `dxray sweep`: random toy worlds, each trained, measured and audited in a
               folder of its own, resumable; stability reruns;
- sweep_table.py  the sweep's pooled table, the SWEEP line and the calibration scatter.

metrics, neurons, classes, images, scoring, results (but `write_eval`), tables, printout and
sweep_table are pure computation over rows and tensors: no Ray, no files.
"""
