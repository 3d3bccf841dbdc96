"""The operator docs are true.

(a) Every alert the rules can raise has a runbook section: the links come from the real
    evaluator (each alert made to fire and notify), the rendered Prometheus rules and the
    CloudWatch alarms, and each anchor must exist in docs/runbook.md (GitHub heading slugs or
    explicit `<a id>` anchors).
(b) Every `ep ...` line in a fenced code block of docs/*.md and README.md names a command that
    exists (`ep X Y --help` exits 0) and uses only options that command lists.
(c) Every `ep` command in docs/runbook.md and docs/troubleshooting.md runs for real, through
    CliRunner, against a temporary platform home: a platform was started there, driven through
    a small game day (faults, a self-test error, a critical error, every alert firing) and shut
    down; placeholders (FP, REQUEST_ID, ...) are replaced by values from that run. Each must
    exit 0 and print something; each `ep logs` query must find lines.
(d) The PromQL shown in those two pages parses (promtool) and names metrics the platform
    exports (or records in deploy/prometheus/rules.yml).
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from starlette.routing import Match
from typer.testing import CliRunner

from experimentation_platform.cli import app
from experimentation_platform.settings import load_settings
from experimentation_platform.telemetry import alerts
from observability.alerting.evaluator import Evaluator
from observability.alerting.grouping import Grouping
from observability.alerting.notifiers import Notification
from observability.alerting.rules import AlertDefinition, Condition, definitions
from observability.alerting.silences import SilenceStore
from observability.alerting.state import StateStore
from observability.cloud.events import ShipperConfig
from observability.cloud.shipper import CloudWatchShipper
from observability.errors import ErrorStore
from observability.metrics.sketch import QuantileSketch
from observability.metrics.telemetry import TelemetryCollector
from observability.query.model import (
    CounterIncrease,
    CounterRate,
    GaugeValue,
    MetricTerm,
    Ratio,
    Stalled,
    series_key,
)
from observability.query.source import CounterTotals, RequestCounts, RouteTotals, name_of
from tests.support.platform import running_instance
from tests.support.servers import require_binary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNBOOK = DOCS / "runbook.md"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
RUN_PAGES = (RUNBOOK, TROUBLESHOOTING)

runner = CliRunner()


# -- markdown -------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    lines: tuple[tuple[int, str], ...]  # (line number, text)


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    fence: str | None = None
    lang = ""
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, lang, lines = match.group(1), match.group(2), []
        elif match and match.group(1).startswith(fence) and not match.group(2):
            blocks.append(Block(path, lang, tuple(lines)))
            fence = None
        else:
            lines.append((number, line))
    return blocks


def prose_lines(path: Path) -> Iterator[str]:
    """Lines outside fenced code blocks."""
    inside: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _FENCE.match(line)
        if inside is None and match:
            inside = match.group(1)
        elif inside is not None and match and match.group(1).startswith(inside):
            inside = None
        elif inside is None:
            yield line


def github_slug(heading: str) -> str:
    """GitHub's heading id: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose_lines(path):
        found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")  # duplicates: GitHub appends -1, -2
    return found


def sections(path: Path) -> dict[str, str]:
    """`## heading` slug -> the text up to the next `##` heading."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in prose_lines(path):
        match = re.match(r"^##\s+(.+)$", line)
        if match:
            current = github_slug(match.group(1))
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


# -- `ep` lines in code blocks --------------------------------------------------------------
@dataclass(frozen=True)
class DocCommand:
    path: Path
    line: int
    text: str
    argv: tuple[str, ...]  # without the leading "ep"

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text}"


_SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def ep_commands(path: Path) -> list[DocCommand]:
    commands: list[DocCommand] = []
    for block in fenced_blocks(path):
        pending = ""
        start = 0
        for number, raw in block.lines:
            line = raw.strip()
            if not pending:
                start = number
            if line.endswith("\\"):  # a continued shell line
                pending += line[:-1] + " "
                continue
            full, pending = (pending + line).strip(), ""
            full = full.removeprefix("$ ")
            try:
                tokens = shlex.split(full, comments=True)
            except ValueError:
                continue  # not shell (JSON, output samples)
            while tokens and _ENV_ASSIGNMENT.match(tokens[0]):
                tokens = tokens[1:]
            if not tokens or tokens[0] != "ep":
                continue
            argv: list[str] = []
            for token in tokens[1:]:
                if token in _SHELL_OPERATORS:
                    break
                argv.append(token)
            commands.append(DocCommand(path, start, full, tuple(argv)))
    return commands


def doc_pages() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


ROOT_COMMAND = typer.main.get_command(app)


def resolve(argv: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    """The command path the arguments name (subcommands consumed) and its command object."""
    # Duck-typed: Typer vendors its own copy of click, so isinstance(click.Group) would not do.
    command: Any = ROOT_COMMAND
    path: list[str] = []
    for token in argv:
        if token not in getattr(command, "commands", {}):
            break
        command = command.commands[token]
        path.append(token)
    return tuple(path), command


def options_used(argv: tuple[str, ...]) -> list[str]:
    return [token.split("=", 1)[0] for token in argv if token.startswith("-") and token != "-"]


# -- (a) every alert has its runbook section --------------------------------------------------
class AlwaysFiring:
    """A MetricSource under which every condition of the given alerts holds.

    Built from the conditions themselves (not a list of rule names), so a new rule is covered
    without touching this test; a rule this cannot satisfy fails (a) loudly.
    """

    def __init__(self, alert_definitions: list[AlertDefinition]) -> None:
        self.quiet = False  # True: no traffic, no series, so every alert resolves
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, dict[str, float]] = {}
        for d in alert_definitions:
            for clause in d.clauses:
                for condition in clause:
                    self._satisfy(condition.expr, condition)

    @staticmethod
    def _value(condition: Condition) -> float:
        step = {">": 1.0, ">=": 0.0, "<": -1.0, "<=": 0.0}[condition.comparison]
        return float(condition.threshold) + step

    def _satisfy(self, expr: MetricTerm, condition: Condition) -> None:
        if isinstance(expr, CounterIncrease | CounterRate):
            window = expr.window_s or 60
            self.counters[series_key(expr.name, expr.where)] = max(
                1.0, self._value(condition) * window
            )
        elif isinstance(expr, Stalled):
            self.counters[series_key(expr.name, expr.where)] = max(0.0, self._value(condition))
        elif isinstance(expr, GaugeValue):
            labels = {**expr.where, "instance": "docs-test"}
            self.gauges.setdefault(expr.name, {})[series_key(expr.name, labels)] = self._value(
                condition
            )
        elif isinstance(expr, Ratio):
            # Every counted event is bad: the ratio is 1 (thresholds on ratios are below 1).
            for name in (expr.numerator, expr.denominator):
                self.counters[series_key(name, expr.where)] = 1000.0
        # error ratios and burn rates: every request fails and is slow (request_counts below)

    def request_counts(self, window_s: int, now: float, where: Any) -> RequestCounts:
        if self.quiet:
            return RequestCounts(0.0, 0.0, 0.0, float(window_s))
        return RequestCounts(1000.0, 1000.0, 1000.0, float(window_s))

    def latency_above(self, *_args: Any) -> tuple[float, float]:
        return (0.0, 0.0) if self.quiet else (1000.0, 1000.0)

    def latency_sketch(self, *_args: Any) -> QuantileSketch:
        sketch = QuantileSketch()
        if not self.quiet:
            sketch.add(60.0)
        return sketch

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        totals = (
            {} if self.quiet else {k: v for k, v in self.counters.items() if name_of(k) == name}
        )
        return CounterTotals(totals, float(window_s))

    def gauge_values(self, name: str, now: float) -> dict[str, float]:
        return {} if self.quiet else self.gauges.get(name, {})

    def reading_rates(self, name: str, window_s: int, now: float) -> dict[str, float]:
        return {}

    def route_totals(self, window_s: int, now: float) -> dict[str, RouteTotals]:
        return {}


def fire_every_alert(
    evaluator_config: Any, state_store: StateStore | None = None
) -> dict[str, Notification]:
    """Run the platform's rules through the real evaluator, with the platform's own config
    except one notification per alert and no inhibition: every alert fires, resolves and fires
    again (so the log has both `alert_fired` and `alert_resolved`)."""
    rules_definitions = definitions(alerts.BASE_RULES)
    sent: list[Notification] = []
    source = AlwaysFiring(rules_definitions)
    evaluator = Evaluator(
        alerts.BASE_RULES,
        source,
        notify=sent.append,
        config=replace(
            evaluator_config,
            grouping=Grouping(group_by=("alertname",), group_wait_s=0),
            inhibit_rules=(),
        ),
        state_store=state_store,
    )
    longest_for = max(d.for_seconds for d in rules_definitions)
    now = time.time() - 2 * longest_for - 120
    for quiet, wait in ((False, 0), (False, longest_for + 1), (True, 1), (False, 1)):
        source.quiet = quiet
        now += wait
        evaluator.evaluate_once(now)
    evaluator.evaluate_once(now + longest_for + 1)
    return {n.title: n for n in sent if n.status == "firing"}


# -- the platform home the runbook commands run against -------------------------------------
@dataclass
class Home:
    directory: Path
    env: dict[str, str | None]
    placeholders: dict[str, str]
    notifications: dict[str, Notification]
    metric_samples: set[str] = field(default_factory=set)
    routes: list[Any] = field(default_factory=list)  # the app's Starlette routes


EXPERIMENT = "cta"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    directory = tmp_path_factory.mktemp("ep-home")
    settings = load_settings(
        var_dir=directory,
        log_dir=directory / "log",
        log_to_stdout=False,
        fault_injection=True,
        alerts_enabled=False,  # the test drives its own evaluator over the same state tables
        slow_query_seconds=0.000001,  # every query is "slow": slow_query lines to search
    )
    with running_instance(settings) as instance:
        client, admin, user = instance.client, instance.admin, instance.user

        def ok(response: Any, *statuses: int) -> Any:
            assert response.status_code in statuses, (response.status_code, response.text)
            return response

        def faults(**changes: Any) -> None:
            ok(client.put("/api/v1/ops/faults", headers=admin, json=changes), 200)

        experiment = {
            "key": EXPERIMENT,
            "name": "CTA colour",
            "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
        }
        ok(client.post("/api/v1/experiments", headers=admin, json=experiment), 201)
        ok(client.post(f"/api/v1/experiments/{EXPERIMENT}/start", headers=admin), 200)

        def assign(user_id: str, *statuses: int) -> None:
            body = {"experiment_key": EXPERIMENT, "user_id": user_id}
            ok(client.post("/api/v1/assignments", headers=user, json=body), *statuses)

        for n in range(4):
            assign(f"u-{n}", 200)
        conversion = {"user_id": "u-1", "name": "purchase", "experiment_key": EXPERIMENT}
        ok(client.post("/api/v1/events", headers=user, json={"events": [conversion]}), 202)
        # A small game day: each fault leaves the evidence the docs tell the operator to find.
        faults(assignment_error_rate=1.0)
        assign("u-9", 500)
        faults(assignment_error_rate=0.0, db_latency_ms=350)
        assign("u-10", 200)  # slower than the 300 ms latency SLO
        faults(db_latency_ms=0, cache_unavailable=True)
        ok(client.get("/health/ready"), 503)
        ok(client.post(f"/api/v1/experiments/{EXPERIMENT}/pause", headers=admin), 500)
        faults(cache_unavailable=False, db_unavailable=True)
        ok(client.get("/health/ready"), 503)
        ok(client.get(f"/api/v1/experiments/{EXPERIMENT}", headers=admin), 500)
        ok(client.post("/api/v1/events", headers=user, json={"events": [conversion]}), 500)
        ok(client.delete("/api/v1/ops/faults", headers=admin), 200)
        failed = ok(
            client.post("/api/v1/ops/selftest/error", headers=admin, json={"note": "docs"}), 500
        )
        request_id = failed.json()["request_id"]
        ok(client.get("/api/v1/ops/windows", headers=admin), 200)

        platform_app: Any = client.app
        observability = platform_app.state.observability
        # The API cannot be made to violate a constraint on demand: a real IntegrityError,
        # captured by the platform's tracker, stands for the critical error group.
        with sqlite3.connect(":memory:") as conn:
            conn.execute("CREATE TABLE exposures (user_id TEXT UNIQUE)")
            conn.execute("INSERT INTO exposures VALUES ('u-1')")
            try:
                conn.execute("INSERT INTO exposures VALUES ('u-1')")
            except sqlite3.IntegrityError as exc:
                observability.errors.capture(exc, {"route": "/api/v1/assignments"})
        assert observability.errors.flush(10)

        # Every alert fires once, through the real evaluator, into this home's alert state
        # (for `ep alerts list`) and its log (`alert_fired` lines).
        engine = observability.errors.store.engine
        notifications = fire_every_alert(
            platform_app.state.observability.evaluator.config, StateStore(engine)
        )
        metrics_text = ok(client.get("/metrics", headers=admin), 200).text
        routes = list(platform_app.routes)

    store = ErrorStore.from_url(settings.resolved_observability_database_url)
    try:
        groups = store.list_groups(status=None, limit=100)
    finally:
        store.dispose()
    fingerprint = next(g.fingerprint for g in groups if g.type.endswith("SelfTestError"))
    silences = SilenceStore(
        ErrorStore.from_url(settings.resolved_observability_database_url).engine
    )
    silences.create_schema()
    silence = silences.create(
        ["alertname=disk_saturation"], author="docs-test", reason="runbook test", duration_s=3600
    )
    silences.engine.dispose()

    return Home(
        directory=directory,
        env={
            "EP_VAR_DIR": str(directory),
            "EP_LOG_DIR": str(directory / "log"),
            "EP_DATABASE_URL": None,
            "EP_ERRORS_DATABASE_URL": None,
            "EP_LOG_FILE_STEM": None,
        },
        placeholders={
            "FP": fingerprint,
            "REQUEST_ID": request_id,
            "USER_ID": "u-10",
            "EXPERIMENT": EXPERIMENT,
            "SILENCE_ID": silence.id,
            "LOG_DIR": str(directory / "log"),
            "ALERT": "api_availability_page",  # fired by fire_every_alert above
        },
        notifications=notifications,
        metric_samples=_sample_names(metrics_text) | _cloudwatch_sample_names(directory),
        routes=routes,
    )


def _sample_names(exposition: str) -> set[str]:
    """Series names in a /metrics text, including declared families with no sample yet."""
    names: set[str] = set()
    for line in exposition.splitlines():
        declared = re.match(r"# TYPE (\S+) (\S+)", line)
        if declared:
            name, kind = declared.groups()
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _cloudwatch_sample_names(directory: Path) -> set[str]:
    """The shipper's metrics exist only with EP_CLOUDWATCH_ENABLED: collect them from the real
    collector over a shipper that is never started (no AWS call)."""
    shipper = CloudWatchShipper(
        ShipperConfig(journal_dir=directory / "cw-journal", region="us-east-1"), client=object()
    )
    try:
        collector = TelemetryCollector(lambda: None, shipper=shipper)
        return {sample.name for family in collector.collect() for sample in family.samples}
    finally:
        shipper.close(0)


# -- (a) ------------------------------------------------------------------------------------
def test_every_alert_links_to_an_existing_runbook_section(home: Home) -> None:
    expected = {d.name: d for d in definitions(alerts.BASE_RULES)}
    assert set(home.notifications) == set(expected), "every alert fires under AlwaysFiring"
    runbook_anchors = anchors(RUNBOOK)
    missing = {}
    for name, notification in home.notifications.items():
        url = notification.runbook_url or ""
        base, _, anchor = url.partition("#")
        assert base == alerts.runbook_url(), (name, url)  # the instance's own /ops/runbook
        if anchor not in runbook_anchors:
            missing[name] = anchor
    assert not missing, f"docs/runbook.md lacks sections for {missing}"


def test_prometheus_and_cloudwatch_link_the_same_sections(home: Home) -> None:
    rendered = yaml.safe_load(alerts.render_prometheus_rules())
    prometheus = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for group in rendered["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert prometheus == {n: home.notifications[n].runbook_url for n in home.notifications}
    runbook_anchors = anchors(RUNBOOK)
    for alarm in alerts.cloudwatch_alarms():
        anchor = alarm["AlarmDescription"].rsplit("#", 1)[1]
        assert anchor in runbook_anchors, alarm["AlarmDescription"]


def test_each_runbook_section_is_complete_and_names_its_alerts() -> None:
    by_anchor: dict[str, list[str]] = {}
    for d in definitions(alerts.BASE_RULES):
        by_anchor.setdefault(d.runbook, []).append(d.name)
    found = sections(RUNBOOK)
    parts = ("What it means", "User impact", "First five minutes", "Diagnosis", "Mitigation")
    for anchor, names in by_anchor.items():
        text = found[anchor]
        for part in (*parts, "Escalation"):
            assert f"**{part}" in text, f"runbook #{anchor} lacks '{part}'"
        for name in names:
            assert f"`{name}`" in text, f"runbook #{anchor} does not name alert {name}"
        steps = re.findall(r"^\d+\. ", text.split("**First five minutes.**")[1], re.M)
        assert len(steps) >= 3, f"runbook #{anchor}: first five minutes needs numbered steps"


def test_links_between_the_docs_resolve() -> None:
    for page in (*RUN_PAGES, DOCS / "alerting.md"):
        for line in prose_lines(page):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if "://" in target:
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (page.parent / file_part).resolve() if file_part else page
                assert linked.is_file(), f"{page.name}: broken link {target}"
                if anchor:
                    assert anchor in anchors(linked), f"{page.name}: no anchor {target}"


# -- (b) ------------------------------------------------------------------------------------
def _all_doc_commands() -> list[DocCommand]:
    return [command for page in doc_pages() for command in ep_commands(page)]


def test_docs_show_ep_commands_in_code_blocks() -> None:
    # The parser must see the runbook's commands, or (b) and (c) would pass vacuously.
    assert len(ep_commands(RUNBOOK)) >= 20
    assert len(ep_commands(TROUBLESHOOTING)) >= 15


@pytest.mark.parametrize("command", _all_doc_commands(), ids=lambda c: f"{c.path.name}:{c.line}")
def test_documented_ep_command_exists_with_its_options(command: DocCommand) -> None:
    path, click_command = resolve(command.argv)
    assert path, f"{command.where}: no such command"
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{command.where}: `ep {' '.join(path)} --help` failed"
    accepted = {
        opt for param in click_command.params for opt in (*param.opts, *param.secondary_opts)
    }
    for option in options_used(command.argv):
        assert option in accepted, f"{command.where}: `ep {' '.join(path)}` has no {option}"
        assert option in result.output, f"{command.where}: {option} missing from --help"


# -- (c) ------------------------------------------------------------------------------------
# Commands the two pages may show that are run here; a new kind of command must be added (or
# the line moved to prose).
RUN_HERE = {
    ("alerts", "list"),
    ("alerts", "silences"),
    ("alerts", "silence"),
    ("alerts", "expire"),
    ("alerts", "backtest"),
    ("errors", "list"),
    ("errors", "show"),
    ("errors", "resolve"),
    ("errors", "ignore"),
    ("errors", "reopen"),
    ("logs",),
    ("logs", "audit"),  # exits 0: the run's logs and error store hold nothing unmasked
    ("incident", "show"),  # being written in parallel: ready for `ep incident show ALERT`
}
# Commands the pages may show that this module does not run, and why.
NOT_RUN_HERE = {
    ("gameday",): "starts instances and waits for alerts: tests/integration/test_gameday.py",
    ("serve",): "a long-running server",
    ("cloud", "deploy"): "needs AWS; tests/observability/cloud runs it against moto",
    ("cloud", "verify"): "needs AWS; tests/observability/cloud runs it against moto",
}


def _runbook_commands() -> list[DocCommand]:
    seen: set[tuple[str, ...]] = set()
    unique: list[DocCommand] = []
    for page in RUN_PAGES:
        for command in ep_commands(page):
            if resolve(command.argv)[0] in NOT_RUN_HERE:
                continue  # run by their own tests (named in NOT_RUN_HERE), not skipped here
            if command.argv not in seen:
                seen.add(command.argv)
                unique.append(command)
    return unique


def _substitute(argv: tuple[str, ...], placeholders: dict[str, str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, placeholders)) + r")\b")
    return [pattern.sub(lambda m: placeholders[m.group(1)], token) for token in argv]


@pytest.mark.parametrize("command", _runbook_commands(), ids=lambda c: f"{c.path.name}:{c.line}")
def test_runbook_command_runs_against_a_real_platform_home(command: DocCommand, home: Home) -> None:
    path, _ = resolve(command.argv)
    assert path in RUN_HERE, f"{command.where}: add `ep {' '.join(path)}` to RUN_HERE"
    if path == ("alerts", "backtest"):
        weeks = command.argv[command.argv.index("--weeks") + 1] if "--weeks" in command.argv else 4
        assert float(weeks) <= 1, f"{command.where}: keep the documented backtest short"
    argv = _substitute(command.argv, home.placeholders)
    result = runner.invoke(app, argv, env=home.env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, f"{command.where}\n{result.output}"
    assert result.output.strip(), f"{command.where}: printed nothing"
    if path == ("logs",):
        assert "no lines matched" not in result.output, (
            f"{command.where}: found no lines; the fixture's game day should produce them"
        )


def test_runbook_commands_find_the_evidence_of_the_run(home: Home) -> None:
    """The triage path of the runbook leads from the alert to the request's log lines."""
    env = home.env
    listed = runner.invoke(app, ["alerts", "list"], env=env).output
    assert "FIRING" in listed
    assert "api_availability_page" in listed
    critical = runner.invoke(app, ["errors", "list", "--severity", "critical"], env=env).output
    assert "IntegrityError" in critical
    shown = runner.invoke(app, ["errors", "show", home.placeholders["FP"]], env=env).output
    assert f"request_id={home.placeholders['REQUEST_ID']}" in shown
    lines = runner.invoke(
        app, ["logs", "--request-id", home.placeholders["REQUEST_ID"], "--format", "json"], env=env
    ).output
    assert "SelfTestError" in lines


def test_urls_in_the_runbook_commands_are_routes_of_the_platform(home: Home) -> None:
    paths = [
        (page.name, number, match.group(1))
        for page in RUN_PAGES
        for block in fenced_blocks(page)
        for number, line in block.lines
        for match in re.finditer(r"\$BASE(/[^\s'\"]*)", line)
    ]
    assert len(paths) >= 10
    for name, number, path in paths:
        concrete = path.replace("EXPERIMENT", EXPERIMENT).split("?")[0]
        scope = {"type": "http", "path": concrete, "method": "GET", "root_path": ""}
        assert any(r.matches(scope)[0] is not Match.NONE for r in home.routes), (
            f"{name}:{number}: {path} is no route of the platform"
        )


# -- (d) ------------------------------------------------------------------------------------
def _promql() -> list[tuple[Path, int, str]]:
    return [
        (block.path, number, line.strip())
        for page in RUN_PAGES
        for block in fenced_blocks(page)
        if block.lang == "promql"
        for number, line in block.lines
        if line.strip()
    ]


_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "on", "ignoring", "by", "without"}


def promql_metric_names(expr: str) -> set[str]:
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match.group(0) not in _PROMQL_WORDS:
            names.add(match.group(0))
    return names


def test_promql_in_the_docs_parses(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    expressions = _promql()
    assert len(expressions) >= 20
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [
                    {"record": f"docs:expression_{i}", "expr": expr}
                    for i, (_, _, expr) in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "docs-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promql_in_the_docs_names_exported_metrics(home: Home) -> None:
    recorded = {
        rule["record"]
        for group in yaml.safe_load(alerts.render_prometheus_rules())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    known = home.metric_samples | recorded | {"up"}
    unknown = [
        f"{page.name}:{number}: {name}"
        for page, number, expr in _promql()
        for name in sorted(promql_metric_names(expr))
        if name not in known
    ]
    assert not unknown, unknown


# -- (e) the README's "first 10 minutes" ------------------------------------------------------
README = ROOT / "README.md"


def _walkthrough() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Your first 10 minutes")
    return text[start : text.index("\n## ", start + 1)]


def _walkthrough_commands() -> list[str]:
    """The shell lines of the walkthrough's code blocks, continuation lines joined."""
    section = _walkthrough()
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        commands += [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    return commands


def test_walkthrough_covers_the_first_ten_minutes_with_current_screenshots() -> None:
    section = _walkthrough()
    for step in ("make run", "/ops", "/api/v1/experiments", "business-metrics",
                 "/api/v1/ops/faults", "/ops/errors", "ep logs --request-id"):  # fmt: skip
        assert step in section, f"the walkthrough lost its step {step!r}"
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", section)
    assert len(images) >= 3
    for image in images:
        path = ROOT / image
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), image
        assert len(data) < 200 * 1024, f"{image}: keep screenshots small"


def test_walkthrough_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    used = [
        tokens[tokens.index("make") + 1]
        for tokens in (shlex.split(c) for c in _walkthrough_commands())
        if "make" in tokens
    ]
    assert used
    assert set(used) <= targets, set(used) - targets


def test_walkthrough_requests_are_routes_with_their_method_and_json_bodies(home: Home) -> None:
    """Each curl names a route of the platform with its method, each JSON body parses, and each
    UI link is a page of the platform."""
    curls = [c for c in _walkthrough_commands() if "curl " in c]
    assert len(curls) >= 5
    for command in curls:
        tokens = shlex.split(command.split("curl", 1)[1].split(";")[0])
        method = tokens[tokens.index("-X") + 1] if "-X" in tokens else "GET"
        (url,) = [t for t in tokens if t.startswith("$BASE/")]
        path = url.removeprefix("$BASE").split("?")[0]
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        assert any(r.matches(scope)[0] is Match.FULL for r in home.routes), (
            f"{method} {path} is no route of the platform"
        )
        if "-d" in tokens and "$n" not in command:
            json.loads(tokens[tokens.index("-d") + 1])
    for path in re.findall(r"http://127\.0\.0\.1:8000(/[^\s)]*)", _walkthrough()):
        scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
        assert any(r.matches(scope)[0] is Match.FULL for r in home.routes), path


def test_every_documented_curl_with_a_body_says_it_is_json() -> None:
    """FastAPI reads a body as JSON only when told: without the header a `curl -d` gets 422."""
    curls = [
        (page.name, number, text)
        for page in doc_pages()
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text("utf-8"), re.S)
        for number, text in enumerate(block.replace("\\\n", " ").splitlines(), 1)
        if re.search(r"\bcurl\b", text) and re.search(r"\s-d\s", text)
    ]
    assert len(curls) >= 4
    for name, number, text in curls:  # number: the line within its block
        assert "content-type: application/json" in text.lower(), (
            f"{name} (block line {number}): {text}"
        )
