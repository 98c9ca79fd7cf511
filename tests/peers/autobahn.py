#!/usr/bin/env python3
"""Runs the Autobahn WebSocket test cases (kosoku's fuzzing client, pinned in
requirements-autobahn.txt) against an echo endpoint and prints a JSON summary on stdout.

    python3 autobahn.py --url ws://127.0.0.1:PORT/ws/echo --report-dir DIR \
        [--exclude '12.*' --exclude '13.*'] [--include CASE]... [--deadline-secs 300]

The Autobahn-format report (index.json, one JSON and one HTML file per case) is written to
--report-dir (a temporary directory when omitted). A case FAILS when its verdict on the message
exchange is FAILED or ERROR, or its verdict on the closing handshake is anything but OK or
INFORMATIONAL (UNCLEAN, WRONG CODE, FAILED, FAILED BY CLIENT): Autobahn's reports count both.
NON-STRICT, INFORMATIONAL and UNIMPLEMENTED are listed, not failures.

Exit status: 0 when no case failed, 1 when some did, 2 when the run itself could not finish
(kosoku missing, the deadline passed, the server unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from collections import Counter
from typing import Any

# Verdicts that are not failures (Autobahn's "Pass" column also accepts these).
ACCEPTED_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
ACCEPTED_BEHAVIOR_CLOSE = {"OK", "INFORMATIONAL"}
# Longest received/expected event text kept per failed case in the summary.
EVENT_TEXT_LIMIT = 200


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/path of the echo server")
    p.add_argument("--include", action="append", metavar="CASE", help="case id or glob (repeatable; default: all)")
    p.add_argument("--exclude", action="append", metavar="CASE", help="case id or glob to leave out (repeatable)")
    p.add_argument("--parallelism", type=int, default=1, help="cases run at once (timing cases prefer 1)")
    p.add_argument("--deadline-secs", type=float, default=300.0, help="hard limit for the whole run")
    p.add_argument("--report-dir", help="where the Autobahn-format report goes (default: a new temp dir)")
    return p.parse_args()


def emit(summary: dict[str, Any], code: int) -> None:
    """Prints the summary and exits at once: kosoku's runtime may still hold threads."""
    sys.stdout.write(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def short(value: Any) -> Any:
    """`value` (events from the report) as JSON-safe data with long texts cut."""
    text = json.dumps(value, default=repr)
    if len(text) > EVENT_TEXT_LIMIT:
        return text[:EVENT_TEXT_LIMIT] + "…"
    return value


def case_entry(result: Any) -> dict[str, Any]:
    return {
        "id": result.case_id,
        "behavior": result.behavior.value,
        "behavior_close": result.behavior_close.value,
        "duration_ms": result.duration,
    }


def detail(result: Any, report: dict[str, Any]) -> dict[str, Any]:
    """What a reader needs to judge a case: what was sent, expected and observed."""
    return {
        **case_entry(result),
        "description": report["description"],
        "expectation": report["expectation"],
        "result": report["result"],
        "result_close": report["resultClose"],
        "expected": short(report["expected"]),
        "received": short(report["received"]),
        "expected_close": report["expectedClose"],
        "remote_close_code": report["remoteCloseCode"],
        "remote_close_reason": report["remoteCloseReason"],
        "was_clean": report["wasClean"],
        "was_not_clean_reason": report["wasNotCleanReason"],
    }


def group_seconds(results: list[Any]) -> dict[str, float]:
    """Seconds spent in each case group ("9" for 9.*), in group order."""
    ms: Counter[str] = Counter()
    for r in results:
        ms[r.case_id.split(".")[0]] += r.duration
    return {g: round(ms[g] / 1000, 1) for g in sorted(ms, key=int)}


async def run(args: argparse.Namespace) -> list[Any]:
    from kosoku import FailureError, run_fuzzingclient

    try:
        return await run_fuzzingclient(
            args.url, args.include, args.exclude, concurrency=args.parallelism
        )
    except FailureError as failure:
        # kosoku raises when any case did not pass (UNIMPLEMENTED included); the results are
        # all there and judged below.
        return list(failure.results)


def main() -> None:
    args = parse_args()
    summary: dict[str, Any] = {"url": args.url, "include": args.include, "exclude": args.exclude}
    try:
        summary["kosoku"] = importlib.metadata.version("kosoku")
        # The report writer of kosoku's own CLI (pinned version, so its private path is stable).
        from kosoku._report import case_to_dict, write_reports
    except Exception as e:  # noqa: BLE001 - any import failure means the same thing here
        summary["error"] = f"kosoku is not installed: {e}"
        emit(summary, 2)

    report_dir = args.report_dir or tempfile.mkdtemp(prefix="segue-autobahn-")
    summary["report_dir"] = report_dir
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(run(args), args.deadline_secs))
    except TimeoutError:
        summary["error"] = f"the cases did not finish within {args.deadline_secs} s"
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        emit(summary, 2)
    except Exception as e:  # noqa: BLE001 - a connection failure or a kosoku crash
        summary["error"] = f"kosoku could not run the cases: {type(e).__name__}: {e}"
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        emit(summary, 2)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    if not results:
        summary["error"] = "kosoku ran no case (a selection that matches nothing?)"
        emit(summary, 2)

    write_reports(results, report_dir)
    failed, non_strict, informational = [], [], []
    for r in results:
        behavior, close = r.behavior.value, r.behavior_close.value
        report = case_to_dict(r)
        if behavior not in ACCEPTED_BEHAVIOR or close not in ACCEPTED_BEHAVIOR_CLOSE:
            failed.append(detail(r, report))
        elif behavior == "NON-STRICT":
            non_strict.append(detail(r, report))
        elif behavior == "INFORMATIONAL":
            informational.append(detail(r, report))

    summary.update(
        {
            "cases": len(results),
            "behavior": dict(Counter(r.behavior.value for r in results)),
            "behavior_close": dict(Counter(r.behavior_close.value for r in results)),
            "failed": failed,
            "non_strict": non_strict,
            "informational": informational,
            "unimplemented": [r.case_id for r in results if r.behavior.value == "UNIMPLEMENTED"],
            "case_seconds_by_group": group_seconds(results),
            "results": [case_entry(r) for r in results],
        }
    )
    emit(summary, 1 if failed else 0)


if __name__ == "__main__":
    main()
