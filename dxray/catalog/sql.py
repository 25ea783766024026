"""Read-only SQL over a catalog, printed as a text table or saved as CSV, JSON or Parquet.

Two independent guards keep the catalog read-only:

1. The query is vetted before it runs. DuckDB's own parser must see exactly one statement of
   type SELECT (DESCRIBE, SHOW, SUMMARIZE, WITH ... SELECT, FROM ..., VALUES parse as SELECT);
   and DuckDB's own tokenizer (so string literals, quoted names and comments do not count)
   must find none of the keywords that change state. The second check is needed: DuckDB 2.0
   runs DML inside a CTE (`WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x` parses as a
   SELECT and deletes), which a statement-type check alone would let through.
2. The query runs on a fresh in-memory connection opened with `connect(root, read_only=True)`:
   external access off and the configuration locked, so even a query that slipped past (1)
   cannot read or write a file, attach a database or load an extension. The catalog's tables
   reach DuckDB as Arrow datasets that pyarrow reads; DuckDB itself never opens a file.

Results are written by Python (pyarrow, csv, json), never by DuckDB's COPY.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
import os
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dxray.catalog.health import leaving_out_damage
from dxray.catalog.outputs import check_output
from dxray.catalog.views import connect
from dxray.text import text_table

Format = Literal["table", "csv", "json", "parquet"]
FORMATS = ("table", "csv", "json", "parquet")
# What `out` may be called for each format, so that a result never overwrites a spec.
OUT_SUFFIXES = {
    "table": (".txt", ".text", ".md"),
    "csv": (".csv", ".tsv", ".txt"),
    "json": (".json", ".jsonl"),
    "parquet": (".parquet", ".pq"),
}

# Keywords that change state somewhere: data, schema, settings, files, extensions, sessions.
WRITE_KEYWORDS = frozenset(
    """ABORT ALTER ANALYZE ATTACH BEGIN CALL CHECKPOINT COMMENT COMMIT COPY CREATE DEALLOCATE
    DELETE DETACH DROP EXECUTE EXPORT GRANT IMPORT INSERT INSTALL LOAD MERGE PRAGMA PREPARE
    REINDEX RESET REVOKE ROLLBACK SET TRUNCATE UPDATE UPSERT USE VACUUM""".split()
)

ALLOWED = "SELECT, WITH ... SELECT, DESCRIBE, SHOW and SUMMARIZE"


class SqlRefused(PermissionError):
    """A query that would change something; the catalog is read-only."""

    def __init__(self, reason: str):
        super().__init__(
            f"refused: {reason}. The catalog is read-only: one statement per call, and only "
            f"{ALLOWED} are allowed."
        )


def check_read_only(query: str) -> str:
    """The query's single statement if it is read-only; raises SqlRefused otherwise (and
    duckdb's ParserException for a query that does not parse)."""
    parser = duckdb.connect()
    try:
        statements = parser.extract_statements(query)
    finally:
        parser.close()
    if not statements:
        raise SqlRefused("the query has no statement")
    if len(statements) > 1:
        raise SqlRefused(f"the query has {len(statements)} statements")
    statement = statements[0]
    keywords = _keywords(query)
    if statement.type != duckdb.StatementType.SELECT:
        writes = [k for k in keywords if k in WRITE_KEYWORDS]
        word = writes[0] if writes else str(statement.type).rsplit(".", 1)[-1]
        raise SqlRefused(f"{word} statements are not allowed")
    for word in keywords:
        if word in WRITE_KEYWORDS:
            raise SqlRefused(
                f"the query uses {word}, which changes state (a name that is a keyword "
                f'must be double-quoted: "{word.lower()}")'
            )
    return statement.query


def _keywords(query: str) -> list[str]:
    """The keywords of `query` in order, upper-case, as DuckDB's tokenizer finds them."""
    tokens = duckdb.tokenize(query)
    ends = [position for position, _ in tokens[1:]] + [len(query)]
    return [
        query[position:end].strip().upper()
        for (position, kind), end in zip(tokens, ends, strict=True)
        if kind == duckdb.token_type.keyword
    ]


def query_table(root: str | os.PathLike, query: str) -> pa.Table:
    """Vet `query` and run it on a locked, read-only connection to the catalog at `root`. A
    file damaged inside is named and left out (`health.leaving_out_damage`)."""
    statement = check_read_only(query)

    def read() -> pa.Table:
        con = connect(root, read_only=True)  # a fresh connection lists the files anew
        try:
            return con.sql(statement).to_arrow_table()
        except duckdb.PermissionException as err:
            raise SqlRefused(f"catalog SQL cannot open files or extensions ({err})") from None
        finally:
            con.close()

    return leaving_out_damage(root, read)


def run_sql(
    root: str | os.PathLike,
    query: str,
    fmt: Format = "table",
    out: str | os.PathLike | None = None,
    *,
    limit: int = 100,
) -> str | bytes | Path:
    """Run a read-only query over the catalog and render the result.

    fmt "table": an aligned text table of at most `limit` rows; "csv": a header and one line
    per row (nested values as JSON, binary as base64); "json": an array of objects (same
    conventions, NaN as null); "parquet": the Arrow result with its types. With `out`, the
    result is written to that file and its path returned; otherwise the text (bytes for
    parquet) is returned.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}; got {fmt!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit is a number of rows >= 1, got {limit!r}")
    if out is not None:
        check_output(out, OUT_SUFFIXES[fmt])  # before the query runs
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"no catalog at {root}: give the folder an audit wrote (output.catalog of its spec)"
        )
    table = query_table(root, query)
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        rendered: str | bytes = buffer.getvalue()
    elif fmt == "csv":
        rendered = to_csv(table)
    elif fmt == "json":
        rendered = to_json(table)
    else:
        rendered = to_text(table, limit=limit)
    if out is None:
        return rendered
    out = check_output(out, OUT_SUFFIXES[fmt])
    if isinstance(rendered, bytes):
        out.write_bytes(rendered)
    else:
        out.write_text(rendered)
    return out


# -- rendering ------------------------------------------------------------------------------


def plain_rows(table: pa.Table) -> list[dict]:
    """Rows as dicts of JSON-ready values: maps as dicts, binary as base64, times as ISO
    strings, decimals as floats, NaN and infinities as None."""
    columns = {
        name: [_plain(v, table.schema.field(name).type) for v in table.column(name).to_pylist()]
        for name in table.column_names
    }
    return [{name: columns[name][i] for name in table.column_names} for i in range(table.num_rows)]


def _plain(value, type_: pa.DataType):
    if value is None:
        return None
    if pa.types.is_map(type_):
        return {str(k): _plain(v, type_.item_type) for k, v in value}
    if (
        pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
    ):
        return [_plain(v, type_.value_type) for v in value]
    if pa.types.is_struct(type_):
        return {f.name: _plain(value.get(f.name), f.type) for f in type_}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def to_json(table: pa.Table) -> str:
    return json.dumps(plain_rows(table), ensure_ascii=False, indent=1) + "\n"


def to_csv(table: pa.Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in plain_rows(table):
        writer.writerow(
            [
                "" if v is None else json.dumps(v) if isinstance(v, dict | list) else v
                for v in row.values()
            ]
        )
    return buffer.getvalue()


def _cell(value, type_: pa.DataType, width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    else:
        plain = _plain(value, type_)
        text = (
            json.dumps(plain, ensure_ascii=False) if isinstance(plain, dict | list) else str(plain)
        )
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= width else text[: width - 1] + "…"


def to_text(table: pa.Table, *, limit: int = 100, width: int = 48) -> str:
    """An aligned plain-text table of the first `limit` rows; numbers right-aligned."""
    names = table.column_names
    if not names:
        return "(no columns)\n"
    shown = table.slice(0, max(limit, 0))
    cells = [
        [_cell(v, table.schema.field(name).type, width) for v in shown.column(name).to_pylist()]
        for name in names
    ]
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in table.schema.types
    ]
    rows = [[col[i] for col in cells] for i in range(shown.num_rows)]
    lines = text_table(names, rows, right=numeric, rule=True)
    total = table.num_rows
    if total > shown.num_rows:
        lines.append(f"({total} rows, first {shown.num_rows} shown)")
    else:
        lines.append(f"({total} row{'s' if total != 1 else ''})")
    return "\n".join(lines) + "\n"
