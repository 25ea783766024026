"""The audit catalog: Parquet tables per run, DuckDB views, read-only SQL and diffs.

writer = CatalogWriter("catalogs/toy")
writer.write_run("run-1", name="toy", classifier="toyworld/classifier", num_targets=8)
writer.write_batch("run-1", explanations=[...], verdicts=[...], images=[...])
writer.finish_run("run-1", "finished")

con = connect("catalogs/toy")                       # views: see dxray/catalog/sql/views.sql
print(run_sql("catalogs/toy", "SELECT * FROM class_summary"))
diff_runs(con, "run-0", "run-1").summary
gate_runs(con, "run-0", "run-1").passed             # the release gate (gate.py: reads the
                                                    # runs; gate_rules.py: decides;
                                                    # gate_render.py: text, JSON, JUnit)

The HTML report of a run is dxray.report (it reads the catalog; the catalog imports
nothing above it: no report, eval, run or cli).
"""
