"""Human text for runs and steps: durations, values, artifacts, and why a step did not run."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..status import RunStatus, StepStatus

SHORT_ID = 12  # characters of a run id shown in tables; `pixelmill show` accepts any unique prefix
MAX_VALUE = 300  # characters of one value shown by `show` (--json prints everything)


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_duration(run: dict, now: datetime | None = None) -> float | None:
    """Seconds from start to finish; for a run still going, so far (``now`` given)."""
    started, finished = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
    if started is None:
        return None
    end = finished or now
    return None if end is None else max(0.0, (end - started).total_seconds())


def clock(text: str | None) -> str:
    return "-" if not text else text[:19].replace("T", " ")


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value(v, artifacts_root: Path | None = None) -> str:
    """One output or input value as a person reads it (no Python reprs)."""
    if isinstance(v, dict) and v.get("kind") == "artifact":
        where = v.get("path") or (str(artifacts_root / v.get("run_id", "") / v.get("name", ""))
                                  if artifacts_root is not None else v.get("name", ""))
        media = v.get("media_type")
        return f"{where}" + (f"  ({media})" if media else "")
    if isinstance(v, str):
        text = v
    elif isinstance(v, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v):
        text = ", ".join(str(x) for x in v) if v else "(none)"
    elif isinstance(v, list) and any(isinstance(x, dict) and x.get("kind") == "artifact" for x in v):
        text = "; ".join(value(x, artifacts_root) for x in v)
    else:
        text = json.dumps(v, default=str, ensure_ascii=False)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + f"… ({len(text)} characters; --json shows all)"
    return text


def mapping_lines(data: dict | None, indent: str, artifacts_root: Path | None = None) -> list[str]:
    if not data:
        return []
    width = max(len(str(k)) for k in data)
    lines = []
    for k, v in data.items():
        text = value(v, artifacts_root).replace("\n", "\n" + indent + " " * (width + 2))
        lines.append(f"{indent}{str(k) + ':':<{width + 1}} {text}")
    return lines


def step_state(step: dict, run: dict, reasons: dict[str, str], reused: set[str]) -> str:
    """What happened to a step, in words: timings for those that ran, why for those that did not."""
    sid, status = step["step_id"], step["status"]
    if sid in reused:
        source = run.get("retry_of")
        return f"reused from run {source[:SHORT_ID]}" if source else "reused from an earlier run"
    if status == StepStatus.CACHED.value:
        return "cached (same node, config and inputs as an earlier run)"
    if status == StepStatus.SKIPPED.value:
        return f"skipped: {reasons.get(sid, 'its condition was false')}"
    if status == StepStatus.CANCELLED.value and sid in reasons:  # never started: the run stopped first
        if run.get("status") == RunStatus.CANCELLED.value:
            return "not run: the run was cancelled"
        if run.get("status") == RunStatus.BLOCKED.value:
            return "not run: an earlier step blocked the run"
        return "not run: an earlier step failed"
    if status == StepStatus.INTERRUPTED.value:
        return "interrupted: the process running it died"
    attempts = step.get("attempts") or 0
    tries = f", {attempts} attempts" if attempts > 1 else ""
    return f"{status} in {duration(step.get('duration_s'))}{tries}"
