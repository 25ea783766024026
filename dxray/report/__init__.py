"""The HTML bias report: one self-contained page per audit run of a catalog.

write_report("catalogs/toy", "report.html", diff_from="run-0")   # newest run vs run-0
html = render_report(connect("catalogs/toy", read_only=True), "run-1")

Modules, one job each (the page reads the catalog through dxray/catalog/sql/report.sql):
- page.py        the page: the sections in order, the inline CSS, writing the file;
- summary.py     the run's header, the legend and the summary figures;
- diff.py        "Change since <run>" (from `dxray.catalog.diff_runs`);
- shortcuts.py   the class-shortcut section with its evidence images;
- evaluation.py  the `dxray eval` section (tables from `dxray.eval.tables`);
- targets.py     the class and unit galleries and the attribute-probe table;
- markup.py      escaping, number formats, badges; thumbnails.py  the inline images;
- queries.py     the named queries of dxray/catalog/sql/report.sql, run as rows;
- report.css     the page's stylesheet (package data, inlined into every page).

Layering: the report reads the catalog (and the evaluation's tables); `dxray.catalog` never
imports this package.
"""
