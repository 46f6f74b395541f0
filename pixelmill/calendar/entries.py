"""Dated entries of a workflow, read and validated at load with ``file:line:col`` positions.

Sources: ``on.at`` (one-off dates in the workflow file) and ``on.calendar.file`` (a YAML or CSV file
beside the workflow, one row per post). Bad dates, unknown or mistyped inputs, unknown targets and two
entries in one slot are errors; a date already in the past when the file is loaded is a warning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from ..inputs import InputError, resolve_inputs
from ..model import CalendarSettings, InputSpec
from ..problems import Problem, shorten
from ..schedules import ScheduleError, parse_interval
from ..schedules import timezone as zone
from ..yamlsource import Located, load

ENTRY_KEYS = ("when", "id", "inputs", "target", "status", "timezone")
CSV_KEYS = ("when", "id", "target", "status", "timezone")  # other CSV columns are inputs
MAX_ENTRIES = 10_000
MAX_FILE = 5_000_000  # bytes


@dataclass(frozen=True)
class Entry:
    """One planned post: a slot (aware, UTC), its inputs, an optional target step, approved up front or not."""

    id: str
    slot: datetime
    inputs: dict = field(default_factory=dict)
    target: str | None = None
    approved: bool = False
    where: str = ""  # file:line of its definition

    def to_dict(self) -> dict:
        return {"id": self.id, "slot": self.slot.isoformat(), "inputs": self.inputs, "target": self.target,
                "approved": self.approved, "where": self.where}


@dataclass
class Calendar:
    """A workflow's calendar: its settings and entries (empty when the workflow has none)."""

    settings: CalendarSettings = field(default_factory=CalendarSettings)
    entries: list[Entry] = field(default_factory=list)
    lead_s: float = 7200.0

    def misfire(self, schedules) -> str:
        if self.settings.misfire:
            return self.settings.misfire
        if schedules and schedules[0].misfire == "skip":
            return "skip"
        return "post_late"


def parse_when(value, tz_name: str) -> datetime:
    """An aware UTC datetime from ISO text (or a YAML date/datetime); a time without offset is in ``tz_name``."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"'{shorten(value)}' is not a date and time like '2026-12-01T09:00' "
                             "(optionally with an offset such as '+01:00')") from None
    else:
        raise ValueError(f"a date and time is needed, like '2026-12-01T09:00', not {shorten(value)}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone(tz_name))
    return t.astimezone(timezone.utc)


class _Reader:
    """Collects entries and problems for one workflow."""

    def __init__(self, specs: dict[str, InputSpec], steps: set[str], now: datetime):
        self.specs = specs
        self.steps = steps
        self.now = now
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.entries: list[Entry] = []
        self._slots: dict[datetime, str] = {}
        self._ids: dict[str, str] = {}

    def entry(self, pos: Callable, raw: dict, tz_name: str, default_id: str) -> None:
        """``pos(key)`` gives (file, line, col) of a key's value (``None``: the row itself)."""
        def err(key, message, hint="", level="error", at_key=False):
            file, line, col = pos(key, at_key)
            (self.warnings if level == "warning" else self.problems).append(
                Problem(file, line, col, message, hint, level))

        ok = True
        for key in raw:
            if key not in ENTRY_KEYS and key != "at":
                err(None, f"calendar entry: unknown field '{shorten(str(key))}'", "fields: " + ", ".join(ENTRY_KEYS))
                ok = False
        tz_name = raw.get("timezone") or tz_name
        try:
            zone(tz_name)
        except ScheduleError as exc:
            err("timezone", str(exc), "timezones are IANA names like 'Europe/Paris'")
            return
        when_key = "at" if "at" in raw else "when"
        try:
            slot = parse_when(raw.get(when_key), tz_name)
        except (ValueError, ScheduleError) as exc:
            err(when_key, f"calendar entry: {exc}")
            return
        status = raw.get("status") or "draft"
        if status not in ("draft", "approved"):
            err("status", f"calendar entry: status must be 'draft' or 'approved', not {shorten(status)}")
            ok = False
        target = raw.get("target") or None
        if target is not None and target not in self.steps:
            err("target", f"calendar entry: target '{shorten(str(target))}' is not a step of this workflow",
                "target names the posting step this entry posts with (trigger.calendar.target)")
            ok = False
        inputs = self._inputs(raw.get("inputs") or {}, err)
        if inputs is None:
            ok = False
        entry_id = str(raw.get("id") or default_id or slot.strftime("%Y%m%dT%H%M%SZ"))
        file, line, _col = pos(None)
        where = f"{file}:{line}"
        if slot in self._slots:
            err(when_key, f"two calendar entries in one slot ({slot.isoformat()}; the other is at "
                          f"{self._slots[slot]})", "move one of them: each slot posts once")
            ok = False
        elif entry_id in self._ids:
            err("id" if "id" in raw else when_key, f"duplicate calendar entry id '{entry_id}' (also at "
                                                    f"{self._ids[entry_id]})")
            ok = False
        if slot <= self.now:
            err(when_key, f"calendar entry {slot.isoformat()} is in the past",
                "it is kept for the record; it fires only if it never ran (see 'misfire')", level="warning")
        if ok:
            self._slots[slot] = where
            self._ids[entry_id] = where
            self.entries.append(Entry(entry_id, slot, inputs, target, status == "approved", where))

    def _inputs(self, given, err) -> dict | None:
        if not isinstance(given, dict):
            err("inputs", "calendar entry: 'inputs' must be a mapping of input names to values")
            return None
        ok = True
        for name, value in given.items():
            if name not in self.specs:
                err(("inputs", name), f"calendar entry: unknown input '{shorten(str(name))}'",
                    "this workflow takes: " + (", ".join(sorted(self.specs)) or "no inputs"), at_key=True)
                ok = False
                continue
            try:
                resolve_inputs({name: self.specs[name]}, {name: value})
            except InputError as exc:
                err(("inputs", name), f"calendar entry: {'; '.join(exc.problems)}")
                ok = False
        if not ok:
            return None
        try:
            return resolve_inputs(self.specs, given)
        except InputError as exc:
            err(None, f"calendar entry: {'; '.join(exc.problems)}")
            return None


def read_calendar(located: Located, on, workflow_dir: Path, inputs, steps: set[str],
                  now: datetime | None = None) -> tuple[Calendar, list[Problem], list[Problem]]:
    """Entries of a workflow (``on`` is its raw ``on:`` mapping); returns (calendar, errors, warnings)."""
    now = now or datetime.now(timezone.utc)
    specs = {}
    for name, raw in (inputs or {}).items() if isinstance(inputs, dict) else ():
        try:
            specs[name] = InputSpec.model_validate(raw)
        except ValidationError:
            pass
    reader = _Reader(specs, steps, now)
    cal = Calendar()
    if not isinstance(on, dict) or ("at" not in on and "calendar" not in on):
        return cal, [], []
    raw_settings = on.get("calendar")
    if raw_settings is not None:
        try:
            cal.settings = CalendarSettings.model_validate(
                {"file": raw_settings} if isinstance(raw_settings, str) else raw_settings)
        except ValidationError:
            return cal, [], []  # reported by the whole-file check
    settings = cal.settings
    base = ("on", "calendar") if isinstance(raw_settings, dict) else ("on",)
    try:
        zone(settings.timezone)
    except ScheduleError as exc:
        reader.problems.append(located.problem(base + ("timezone",), str(exc)))
        return cal, reader.problems, reader.warnings
    try:
        cal.lead_s = parse_interval(settings.lead)
    except ScheduleError as exc:
        reader.problems.append(located.problem(base + ("lead",), f"calendar lead: {exc}"))
    at = on.get("at")
    items = [at] if isinstance(at, dict) else at if isinstance(at, list) else []
    for k, raw in enumerate(items):
        path = ("on", "at") if isinstance(at, dict) else ("on", "at", k)
        if not isinstance(raw, dict):
            continue  # reported by the whole-file check

        def pos(key, at_key=False, path=path):
            sub = path if key is None else path + (key if isinstance(key, tuple) else (key,))
            line, col = located.where(sub, key=at_key)
            return located.file, line, col
        reader.entry(pos, raw, settings.timezone, "")
    if settings.file:
        _read_file(reader, located, base, workflow_dir, settings)
    cal.entries = sorted(reader.entries, key=lambda e: e.slot)
    return cal, reader.problems, reader.warnings


def _read_file(reader: _Reader, located: Located, base, workflow_dir: Path, settings: CalendarSettings) -> None:
    name = settings.file
    at = base + ("file",)
    path = workflow_dir / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        reader.problems.append(located.problem(at, f"calendar file '{shorten(name)}' must be beside the workflow",
                                               "write a file name such as 'calendar.yaml'"))
        return
    if path.suffix not in (".yaml", ".yml", ".csv"):
        reader.problems.append(located.problem(at, f"calendar file '{shorten(name)}' must be .yaml, .yml or .csv"))
        return
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_FILE:
            raise OSError(f"larger than {MAX_FILE} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reader.problems.append(located.problem(at, f"cannot read calendar file '{shorten(name)}': {exc}",
                                               "create it beside the workflow (UTF-8)"))
        return
    if path.suffix == ".csv":
        _read_csv(reader, str(path), text, settings.timezone)
    else:
        _read_yaml(reader, str(path), text, settings.timezone)


def _read_yaml(reader: _Reader, file: str, text: str, tz_name: str) -> None:
    doc = load(text, file)
    if doc.problems:
        reader.problems.extend(doc.problems)
        return
    data = doc.data
    rows_path: tuple = ()
    if isinstance(data, dict):
        for key in data:
            if key not in ("timezone", "entries"):
                reader.problems.append(doc.problem((key,), f"unknown key '{shorten(str(key))}' in a calendar file",
                                                   "a calendar file has 'timezone' and 'entries'", key=True))
        tz_name = data.get("timezone") or tz_name
        try:
            zone(tz_name)
        except ScheduleError as exc:
            reader.problems.append(doc.problem(("timezone",), str(exc)))
            return
        data, rows_path = data.get("entries"), ("entries",)
    if not isinstance(data, list):
        reader.problems.append(doc.problem(rows_path, "a calendar file is a list of entries (or 'entries:')",
                                           "each entry has 'when' and optionally 'inputs', 'target', 'status'"))
        return
    for i, row in enumerate(data[:MAX_ENTRIES]):
        path = rows_path + (i,)
        if not isinstance(row, dict):
            reader.problems.append(doc.problem(path, "a calendar entry is a mapping with 'when'"))
            continue

        def pos(key, at_key=False, path=path):
            sub = path if key is None else path + (key if isinstance(key, tuple) else (key,))
            line, col = doc.where(sub, key=at_key)
            return file, line, col
        reader.entry(pos, row, tz_name, "")


def _read_csv(reader: _Reader, file: str, text: str, tz_name: str) -> None:
    lines = text.splitlines()
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except StopIteration:
        reader.problems.append(Problem(file, 1, 1, "the calendar file is empty", "first line: when,<input>,..."))
        return
    except csv.Error as exc:
        reader.problems.append(Problem(file, 1, 1, f"CSV error: {exc}"))
        return
    header = [h.strip() for h in header]
    if "when" not in header:
        reader.problems.append(Problem(file, 1, 1, "a calendar CSV needs a 'when' column",
                                       "first line: when,<input>,...,target,status"))
        return
    starts = _column_starts(lines[0] if lines else "")
    try:
        for n, cells in enumerate(rows):
            if n >= MAX_ENTRIES:
                break
            line = rows.line_num
            if not any(c.strip() for c in cells):
                continue
            cols = _column_starts(lines[line - 1]) if line - 1 < len(lines) else []
            raw: dict = {"inputs": {}}
            for k, cell in enumerate(cells):
                if k >= len(header):
                    reader.problems.append(Problem(file, line, _col(cols, k), "more cells than header columns"))
                    break
                name, value = header[k], cell.strip()
                if value == "":
                    continue
                if name in CSV_KEYS:
                    raw[name] = value
                else:
                    raw["inputs"][name] = value

            def pos(key, _at_key=False, line=line, cols=cols):
                if key is None:
                    return file, line, 1
                name = key[1] if isinstance(key, tuple) else key
                if name == "inputs" or name not in header:
                    return file, line, 1
                k = header.index(name)
                return (file, 1, _col(starts, k)) if isinstance(key, tuple) and name not in reader.specs \
                    else (file, line, _col(cols, k))
            reader.entry(pos, raw, tz_name, "")
    except csv.Error as exc:
        reader.problems.append(Problem(file, rows.line_num, 1, f"CSV error: {exc}"))


def _column_starts(line: str) -> list[int]:
    """1-based column where each cell of a CSV line starts (cells with quoted commas are rare in calendars)."""
    starts, col = [], 1
    for cell in next(csv.reader([line]), []):
        starts.append(col)
        col += len(cell) + 1 + (2 if "," in cell or '"' in cell else 0)
    return starts


def _col(starts: list[int], k: int) -> int:
    return starts[k] if k < len(starts) else 1
