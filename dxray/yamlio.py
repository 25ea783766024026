"""YAML as dxray's config files read it (audit specs, toy worlds): safe, strict about keys
written twice, and checked field by field by one checker whose every error names the file, the
field path and what is allowed, with a "did you mean" for a near miss.

    data = read_yaml(path, what="the audit spec", error=SpecError)   # strict: no key twice
    check = Checker("audit.yaml", error=SpecError)   # path-based checks
    check.number(value, "engine.lr", lo=0, open_lo=True)
    top = Section(data, "", check, allowed=["name", "engine"], required={"name": "an id"})
    engine = top.section("engine", allowed=["lr", "iterations"])   # key-based, same checks
    lr = engine.number("lr", 0.1, lo=0, open_lo=True)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from math import isfinite
from pathlib import Path
from re import Pattern
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key written twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Bounds of a config file, checked before anything reads its values: specs and worlds are a
# few kB; a file 1,000 times that, or a document whose aliases expand to more values than a
# spec could use (YAML anchors make a few lines expand exponentially), is refused.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000


def read_yaml(path: Path, *, what: str, error: type[Exception] = ValueError) -> Any:
    """The data of a YAML file read with `StrictLoader`; an unreadable, binary, oversized or
    malformed file, or one whose aliases expand beyond MAX_YAML_VALUES values, raises `error`
    naming the file and `what` it was meant to be."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read {what} ({err.strerror})") from err
    if len(raw) > MAX_YAML_BYTES:
        raise error(
            f"{path}: {len(raw):,} bytes is too large for {what} (at most {MAX_YAML_BYTES:,})"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: {what} must be UTF-8 text; byte {err.start} is not") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from err
    if count_values(data, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise error(
            f"{path}: {what} expands to more than {MAX_YAML_VALUES:,} values (its aliases "
            "repeat lists or mappings into each other): write the values out"
        )
    return data


def count_values(data: Any, limit: int) -> int:
    """How many values `data` holds with every alias expanded, counting stops past `limit`
    (so an alias bomb costs at most `limit` steps)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return count


def suggest(word: Any, allowed: Sequence[Any], n: int = 1, cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest of `allowed`, or '' when none is close."""
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=n, cutoff=cutoff)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def kind(value: Any) -> str:
    """A value as an error message shows what it got: its type and repr."""
    return "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"


def _is_finite_number(text: str) -> bool:
    try:
        return isfinite(float(text))
    except ValueError:
        return False


class Checker:
    """Checks of one file's values, each given with its field path ("engine.lr",
    "classes[2].name"); a failed check raises `error` naming the file and the path."""

    def __init__(self, source: str, *, error: type[Exception] = ValueError):
        self.source, self.error_type = source, error

    def fail(self, path: str, problem: str) -> Exception:
        """The error to raise: "<file>: <path>: <problem>"."""
        return self.error_type(
            f"{self.source}: {path}: {problem}" if path else f"{self.source}: {problem}"
        )

    def mapping(
        self,
        value: Any,
        path: str,
        *,
        allowed: Sequence[str],
        required: Mapping[str, str] | Sequence[str] = (),
    ) -> Mapping:
        """A mapping whose keys are all `allowed` and hold every `required` one (a mapping of
        key -> what it is, said when it is missing, or a plain list of keys)."""
        allowed = sorted(allowed) if isinstance(allowed, set | frozenset) else list(allowed)
        if not isinstance(value, Mapping):
            raise self.fail(
                path, f"expected a mapping with keys {', '.join(allowed)}; got {kind(value)}"
            )
        for key in value:
            if key not in allowed:
                raise self.fail(
                    _join(path, key),
                    f"unknown key {key!r}; allowed: {', '.join(allowed)}" + suggest(key, allowed),
                )
        why = required if isinstance(required, Mapping) else dict.fromkeys(sorted(required), "")
        for key in why:
            if key not in value:
                raise self.fail(
                    _join(path, key), "missing (required)" + (f": {why[key]}" if why[key] else "")
                )
        return value

    def sequence(self, value: Any, path: str, *, what: str = "entries", min_len: int = 0) -> list:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"expected a list of {what}, got {kind(value)}")
        if len(value) < min_len:
            raise self.fail(path, f"needs at least {min_len} {what}, got {len(value)}")
        return list(value)

    def integer(self, value: Any, path: str, *, lo: int, nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            also = " or null" if nullable else ""
            raise self.fail(path, f"expected an integer >= {lo}{also}, got {kind(value)}")
        if value < lo:
            raise self.fail(path, f"must be >= {lo}, got {value}")
        return value

    def number(
        self,
        value: Any,
        path: str,
        *,
        lo: float,
        hi: float | None = None,
        open_lo: bool = False,
        nullable: bool = False,
    ) -> float | None:
        if value is None and nullable:
            return None
        bounds = (f"> {lo:g}" if open_lo else f">= {lo:g}") + (
            f" and <= {hi:g}" if hi is not None else ""
        )
        allowed = f"a number {bounds}" + (" or null" if nullable else "")
        if isinstance(value, str) and _is_finite_number(value):
            # YAML 1.1 reads 1e-3 (no dot) as text; 1.0e-3 or 0.001 is a number.
            raise self.fail(
                path, f"expected {allowed}, got the text {value!r}; write it as {float(value)!r}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise self.fail(path, f"expected {allowed}, got {kind(value)}")
        if (value <= lo if open_lo else value < lo) or (hi is not None and value > hi):
            raise self.fail(path, f"must be {bounds}, got {value}")
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {kind(value)}")
        return value

    def one_of(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in choices:
            raise self.fail(
                path, f"{value!r} is not one of {', '.join(choices)}" + suggest(value, choices)
            )
        return value

    def text(
        self,
        value: Any,
        path: str,
        *,
        nullable: bool = False,
        pattern: Pattern | None = None,
        rule: str = "",
        max_length: int | None = None,
    ) -> str | None:
        """A non-empty string; with `pattern`, one that matches it (`rule` says the rule)."""
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            also = " or null" if nullable else ""
            raise self.fail(path, f"expected a non-empty string{also}, got {kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(path, f"{value!r} is not a valid id: use {rule}")
        if max_length is not None and len(value) > max_length:
            raise self.fail(
                path,
                f"is {len(value)} characters long; use at most {max_length} (it names folders)",
            )
        return value

    def texts(self, value: Any, path: str, *, what: str, item: str) -> tuple[str, ...]:
        """A list of distinct non-empty strings: `what` names the list, `item` one entry."""
        items = self.sequence(value, path, what=what)
        seen: dict[str, int] = {}
        for i, entry in enumerate(items):
            if not isinstance(entry, str) or not entry.strip():
                raise self.fail(
                    f"{path}[{i}]", f"expected {item} (a non-empty string), got {kind(entry)}"
                )
            if entry in seen:
                raise self.fail(
                    f"{path}[{i}]", f"{entry!r} is listed twice (also at [{seen[entry]}])"
                )
            seen[entry] = i
        return tuple(items)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class Section:
    """One mapping of a file, read key by key with `Checker`'s checks; a key left out takes
    the default given. An empty section ("engine:" with nothing under it) means every default."""

    def __init__(
        self,
        data: Any,
        path: str,
        check: Checker,
        *,
        allowed: Sequence[str],
        required: Mapping[str, str] | Sequence[str] = (),
    ):
        self.path, self.check, self.allowed = path, check, list(allowed)
        self.data = check.mapping(
            {} if data is None else data, path, allowed=allowed, required=required
        )

    @property
    def source(self) -> str:
        return self.check.source

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def error(self, key: str, problem: str) -> Exception:
        return self.check.fail(self.at(key) if key else self.path, problem)

    def value(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def section(
        self, key: str, *, allowed: Sequence[str], required: Mapping[str, str] | Sequence[str] = ()
    ) -> Section:
        return Section(
            self.data.get(key), self.at(key), self.check, allowed=allowed, required=required
        )

    def integer(
        self, key: str, default: int | None, *, lo: int, nullable: bool = False
    ) -> int | None:
        return self.check.integer(self.value(key, default), self.at(key), lo=lo, nullable=nullable)

    def number(self, key: str, default: float | None, **bounds: Any) -> float | None:
        return self.check.number(self.value(key, default), self.at(key), **bounds)

    def boolean(self, key: str, default: bool) -> bool:
        return self.check.boolean(self.value(key, default), self.at(key))

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        return self.check.one_of(self.value(key, default), self.at(key), choices)

    def text(self, key: str, default: str | None, **rules: Any) -> str | None:
        return self.check.text(self.value(key, default), self.at(key), **rules)

    def sequence(self, key: str, default: Sequence[Any], what: str) -> list:
        return self.check.sequence(self.value(key, default), self.at(key), what=what)

    def texts(self, key: str, default: Sequence[str], what: str, item: str) -> tuple[str, ...]:
        return self.check.texts(self.value(key, default), self.at(key), what=what, item=item)
