"""The `dxray` command (`main.py`: the app, its commands in order, errors as one line).

One module per group of commands:

    audit.py     audit, demo: run (or resume) an audit, then say what it found
    catalog.py   sql, report, diff, gate, catalog check: read a catalog
    evaluate.py  eval, score, sweep: verdicts against ground truth or human labels
    scan.py      scan: audit new checkpoints, diff and gate them
    bench.py     bench engine | audit | scale
    convert.py   convert robustness | fairface: released checkpoints -> classifier folders
    zoo.py       zoo train | check | truth: the toy world's models
    common.py    what they share: `fail` (one line, exit 2), --debug, the bad-input errors

`python -m dxray.cli` runs it (`__main__.py`), as does the `dxray` script.
"""
