"""Local log search (`ep logs`) over a day of realistic JSON-lines logs.

Run on demand:
    python benchmarks/logsearch.py                 # 1 GB of JSON lines (uncompressed)
    python benchmarks/logsearch.py --size-mb 200   # a quicker run
    python benchmarks/logsearch.py --dir /tmp/logs --keep   # reuse / keep the generated files

The logs are written by the real RotatingFileSink (with a synthetic clock spanning the last
24 hours), so the files have the production names, sizes and gzip level: many rotated
`platform.<stamp>.log.gz` files plus the active `platform.log`. A "needle" request has lines
planted in the oldest rotated file, in the middle of the day and in the active file, so the
request_id search must cross gzipped, rotated and active files.

Each search is timed (best of --rounds) and reported in seconds per GB of JSON lines and per GB
on disk. `--compare` also times the reading strategies the engine could have used, over the same
files, so the choice made in observability/logsearch.py can be re-checked on any machine.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson

from observability.logging.sinks import LogRecordOut, RotatingFileSink
from observability.logsearch import LogQuery, LogSearch, log_files, parse_condition

NEEDLE = "feedfacecafebeef0123456789abcdef"
ROUTES = (
    ("POST", "/api/v1/assignments", "/api/v1/assignments", 0.30),
    ("GET", "/api/v1/flags/{key}/evaluation", "/api/v1/flags/new-onboarding-{n}/evaluation", 0.25),
    ("POST", "/api/v1/events", "/api/v1/events", 0.20),
    ("GET", "/api/v1/experiments/{key}", "/api/v1/experiments/checkout-button-{n}", 0.10),
    ("GET", "/api/v1/experiments/{key}/results", "/api/v1/experiments/pricing-{n}/results", 0.05),
    ("PATCH", "/api/v1/flags/{key}", "/api/v1/flags/dark-mode-{n}", 0.03),
    ("GET", "/health/ready", "/health/ready", 0.07),
)
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "python-httpx/0.28.1",
    "okhttp/4.12.0",
    "curl/8.5.0",
)
ERRORS = (
    ("OperationalError", "sqlalchemy.exc", "database is locked"),
    ("TimeoutError", "builtins", "redis read timed out"),
    ("KeyError", "builtins", "'variant'"),
)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _request(rng: random.Random, at: float, request_id: str | None = None) -> list[dict[str, Any]]:
    """The lines one request leaves: domain events, maybe a warning or a failure, the access
    line."""
    method, route, path, _ = rng.choices(ROUTES, weights=[r[3] for r in ROUTES])[0]
    rid = request_id or uuid.UUID(int=rng.getrandbits(128)).hex
    ctx: dict[str, Any] = {
        "request_id": rid,
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "user_id": f"u_{rng.randrange(1, 50_000)}",
        "principal": f"key_{rng.randrange(1, 40):04d}",
        "method": method,
        "route": route,
        "client_ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
    }
    duration = rng.lognormvariate(2.0, 0.9)
    roll = rng.random()
    status = 200 if roll < 0.95 else 404 if roll < 0.985 else 422 if roll < 0.995 else 500
    lines: list[dict[str, Any]] = []
    if route == "/api/v1/assignments":
        lines.append(
            {
                "event": "assignment_made",
                "logger": "experimentation_platform.api.assignments",
                "level": "info",
                "experiment": f"checkout-button-{rng.randrange(100)}",
                "variant": rng.choice(("control", "treatment")),
                "cached": rng.random() < 0.8,
            }
        )
    if rng.random() < 0.01:
        lines.append(
            {
                "event": "slow_query",
                "logger": "sqlalchemy.engine",
                "level": "warning",
                "statement": "SELECT experiments.key, experiments.status FROM experiments WHERE "
                "experiments.key = ?",
                "elapsed_ms": round(duration * 0.8, 3),
            }
        )
    if status == 500:
        name, module, message = rng.choice(ERRORS)
        lines.append(
            {
                "event": "request_failed",
                "logger": "observability.request",
                "level": "error",
                "status": 500,
                "path": path.format(n=rng.randrange(100)),
                "exception": {
                    "type": name,
                    "module": module,
                    "message": message,
                    "frames": [
                        {
                            "file": "src/experimentation_platform/storage/db.py",
                            "line": 88,
                            "function": "session",
                            "code": "yield session",
                        },
                        {
                            "file": "src/experimentation_platform/api/assignments.py",
                            "line": 21,
                            "function": "assign",
                            "code": "return service.assign(body)",
                        },
                    ],
                },
            }
        )
    access: dict[str, Any] = {
        "event": "request_completed",
        "logger": "observability.request",
        "level": "error" if status >= 500 else "warning" if status >= 400 else "info",
        "path": path.format(n=rng.randrange(100)),
        "status": status,
        "duration_ms": round(duration, 3),
        "bytes_in": rng.randrange(0, 900) if method != "GET" else 0,
        "bytes_out": rng.randrange(60, 4000),
        "headers": {"user-agent": rng.choice(USER_AGENTS), "accept": "application/json"},
    }
    if status == 500:
        access["error_type"] = lines[-1]["exception"]["type"]
    lines.append(access)
    out = []
    for offset, line in enumerate(lines):
        stamped = {"timestamp": _stamp(at + offset * duration / 1000.0 / len(lines))}
        stamped.update(level=line["level"], logger=line["logger"], event=line["event"])
        stamped.update(line)  # the pipeline's key order: timestamp, level, logger, event, ...
        for key, value in ctx.items():
            stamped.setdefault(key, value)
        out.append(stamped)
    return out


def _background(rng: random.Random, at: float) -> dict[str, Any]:
    """Lines with no request: the cache refresher, the shipper, stdlib loggers."""
    kind = rng.random()
    if kind < 0.5:
        return {
            "timestamp": _stamp(at),
            "level": "info",
            "logger": "experimentation_platform.cache",
            "event": "cache_refreshed",
            "entries": rng.randrange(10, 500),
        }
    if kind < 0.9:
        return {
            "timestamp": _stamp(at),
            "level": "debug",
            "logger": "observability.cloud.shipper",
            "event": "batch_shipped",
            "records": rng.randrange(1, 10_000),
            "bytes": rng.randrange(1000, 1_000_000),
        }
    return {
        "timestamp": _stamp(at),
        "level": "warning",
        "logger": "uvicorn.error",
        "event": "Invalid HTTP request received.",
    }


def generate(directory: Path, size_mb: int, seed: int = 7) -> dict[str, Any]:
    """Write about `size_mb` MB of JSON lines spread over the last 24 hours; return the facts."""
    rng = random.Random(seed)
    target = size_mb * 1024 * 1024
    end = time.time()
    start = end - 86_400.0
    approx_lines = target // 430  # measured mean line size of this generator
    step = 86_400.0 / max(approx_lines, 1)
    now = [start]
    sink = RotatingFileSink(
        directory,
        max_bytes=max(4 * 1024 * 1024, target // 40),  # ~40 rotated files, like a busy day
        rotate_seconds=10 * 86_400.0,
        retention_days=3650.0,
        clock=lambda: now[0],
    )
    needle_at = {0.001, 0.5, 0.9995}  # fractions of the volume: oldest file, midday, active file
    written = lines = needle_lines = 0
    batch: list[LogRecordOut] = []
    while written < target:
        fraction = written / target
        plant = next((f for f in needle_at if fraction >= f), None)
        if plant is not None:
            needle_at.discard(plant)
            events = _request(rng, now[0], request_id=NEEDLE)
            needle_lines += len(events)
        elif rng.random() < 0.15:
            events = [_background(rng, now[0])]
        else:
            events = _request(rng, now[0])
        for event in events:
            line = orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
            batch.append((20, event, line))
            written += len(line)
            lines += 1
        now[0] += step * len(events)
        if len(batch) >= 2000:
            sink.write(batch)
            batch = []
    sink.write(batch)
    sink.close()  # waits for the compression threads
    return {"lines": lines, "bytes": written, "needle_lines": needle_lines, "start": start}


def _disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in log_files(directory))


def _best(rounds: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(rounds):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def _searches(facts: dict[str, Any]) -> Iterator[tuple[str, LogQuery]]:
    midday = datetime.fromtimestamp(facts["start"] + 43_200.0, UTC)
    yield "request_id (all files)", LogQuery(request_id=NEEDLE, limit=10_000)
    yield "level>=error + route", LogQuery(level="error", route="/api/v1/assignments")
    yield "time range (15 min)", LogQuery(since=midday, until=midday + timedelta(minutes=15))
    yield (
        "where status=500 + duration_ms>=100",
        LogQuery(where=(parse_condition("status=500"), parse_condition("duration_ms>=100"))),
    )


def _compare(files: list[str], rounds: int) -> list[tuple[str, float]]:
    """The same request_id search under each reading strategy the engine could have used."""
    con = duckdb.connect()
    strategies = {
        "read_csv one column + contains prefilter (chosen)": (
            "SELECT count(*) FROM read_csv(?, columns={'line': 'VARCHAR'}, delim='\x01', "
            "quote='', escape='', header=false, auto_detect=false, compression='auto', "
            "ignore_errors=true, "
            "max_line_size=16777216) WHERE contains(line, ?) "
            "AND json_extract_string(line, '$.request_id') = ?"
        ),
        "read_csv one column, json_extract only": (
            "SELECT count(*) FROM read_csv(?, columns={'line': 'VARCHAR'}, delim='\x01', "
            "quote='', escape='', header=false, auto_detect=false, compression='auto', "
            "ignore_errors=true, "
            "max_line_size=16777216) WHERE json_extract_string(line, '$.request_id') = ? "
            "AND ? IS NOT NULL"
        ),
        "read_ndjson_objects + json_extract": (
            "SELECT count(*) FROM read_ndjson_objects(?, compression='auto', ignore_errors=true, "
            "maximum_object_size=16777216) WHERE ? IS NOT NULL "
            "AND json_extract_string(json, '$.request_id') = ?"
        ),
        "read_json columns= (typed, union_by_name)": (
            "SELECT count(*) FROM read_json(?, format='newline_delimited', union_by_name=true, "
            "compression='auto', ignore_errors=true, maximum_object_size=16777216, "
            "columns={'timestamp': 'VARCHAR', 'level': 'VARCHAR', 'request_id': 'VARCHAR', "
            "'route': 'VARCHAR', 'status': 'VARCHAR'}) WHERE ? IS NOT NULL AND request_id = ?"
        ),
        "read_json inferred (union_by_name)": (
            "SELECT count(*) FROM read_json(?, format='newline_delimited', union_by_name=true, "
            "compression='auto', ignore_errors=true, maximum_object_size=16777216) "
            "WHERE ? IS NOT NULL AND request_id = ?"
        ),
    }
    results = []
    for name, sql in strategies.items():
        seconds, count = _best(
            rounds, lambda sql=sql: int(con.execute(sql, [files, NEEDLE, NEEDLE]).fetchone()[0])
        )
        results.append((f"{name} [{count} lines]", seconds))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="JSON lines to generate (MB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="reuse or keep logs here")
    parser.add_argument("--keep", action="store_true", help="do not delete the generated logs")
    parser.add_argument("--compare", action="store_true", help="also time other strategies")
    args = parser.parse_args()

    directory = args.dir or Path(tempfile.mkdtemp(prefix="ep-logsearch-"))
    facts_file = directory / "facts.json"
    try:
        if facts_file.exists():
            facts = orjson.loads(facts_file.read_bytes())
            print(f"reusing {directory}")
        else:
            began = time.perf_counter()
            facts = generate(directory, args.size_mb)
            facts_file.write_bytes(orjson.dumps(facts))
            print(f"generated in {time.perf_counter() - began:.1f} s")
        files = log_files(directory)
        disk = _disk_bytes(directory)
        gb_json, gb_disk = facts["bytes"] / 1e9, disk / 1e9
        print(
            f"{facts['lines']:,} lines, {facts['bytes'] / 1e6:,.0f} MB JSON, "
            f"{disk / 1e6:,.0f} MB on disk in {len(files)} files "
            f"({sum(p.suffix == '.gz' for p in files)} gzipped)"
        )
        engine = LogSearch(directory)
        print(f"\n{'search':<40} {'matches':>8} {'s':>8} {'s/GB json':>10} {'s/GB disk':>10}")
        for name, query in _searches(facts):
            seconds, count = _best(args.rounds, lambda q=query: len(engine.search(q)))
            print(
                f"{name:<40} {count:>8} {seconds:>8.2f} {seconds / gb_json:>10.2f} "
                f"{seconds / gb_disk:>10.2f}"
            )
            if name.startswith("request_id") and count != facts["needle_lines"]:
                print(f"  !! expected {facts['needle_lines']} lines of the needle request")
        if args.compare:
            print(f"\n{'strategy (request_id search)':<62} {'s':>8} {'s/GB json':>10}")
            for name, seconds in _compare([str(p) for p in files], args.rounds):
                print(f"{name:<62} {seconds:>8.2f} {seconds / gb_json:>10.2f}")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
