"""The after-the-fact audit: stored log files (active, rotated, gzipped) and the error store,
reported by file, line, field and detector, never echoing the value; and its periodic form."""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from experimentation_platform.cli import app
from observability.errors import ErrorStore
from observability.errors.store import occurrences_table
from observability.logaudit import LogAuditor, audit, audit_logs
from tests.observability.masking_corpus import draw

runner = CliRunner()
RNG = random.Random(16)
GITHUB = draw(RNG, "github")
CARD = draw(RNG, "card")
EMAIL = draw(RNG, "email")


def line(stamp: str, **fields: object) -> str:
    return json.dumps({"timestamp": stamp, "level": "info", "event": "x", **fields}) + "\n"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A RotatingFileSink directory: an old gzipped file, a rotated plain one, the active one."""
    directory = tmp_path / "log"
    directory.mkdir()
    with gzip.open(directory / "platform.20261201T000000.000000Z.log.gz", "wt") as old:
        old.write(line("2026-11-30T23:00:00.000000Z", note="clean"))
        old.write(line("2026-11-30T23:00:01.000000Z", headers={"x": f"token {GITHUB.text}"}))
    (directory / "platform.20261203T000000.000000Z.log").write_text(
        line("2026-12-02T10:00:00.000000Z", password="hunter2")  # an unmasked password field
        + "not json at all, card "
        + CARD.text
        + "\n"
    )
    (directory / "platform.log").write_text(
        line("2026-12-05T10:00:00.000000Z", note="[MASKED:email]", password="[MASKED]")
        + line("2026-12-05T11:00:00.000000Z", user=EMAIL.text)
    )
    return directory


def test_finds_each_secret_where_it_is(log_dir: Path) -> None:
    report = audit_logs(log_dir)
    found = {(Path(f.source).name, f.line, f.field, f.detector) for f in report.findings}
    assert found == {
        ("platform.20261201T000000.000000Z.log.gz", 2, "headers.x", "github_token"),
        ("platform.20261203T000000.000000Z.log", 1, "password", "sensitive_key"),
        ("platform.20261203T000000.000000Z.log", 2, "-", "card"),
        ("platform.log", 2, "user", "email"),
    }
    assert report.files == 3
    assert report.lines == 6


def test_since_skips_older_files_and_lines(log_dir: Path) -> None:
    from datetime import UTC, datetime

    report = audit_logs(log_dir, since=datetime(2026, 12, 5, 10, 30, tzinfo=UTC))
    assert [(f.field, f.detector) for f in report.findings] == [("user", "email")]
    assert report.files == 1  # both rotated files were closed before `since`


def test_error_store_rows_are_audited(tmp_path: Path) -> None:
    store = ErrorStore.from_url(f"sqlite:///{tmp_path / 'errors.db'}")
    store.create_schema()
    with store.engine.begin() as connection:  # a row written before masking existed
        connection.execute(
            occurrences_table.insert().values(
                fingerprint="f" * 16,
                timestamp=time.time(),
                message="boom",
                context={"query": f"card={CARD.text}"},
                frames=[],
            )
        )
    try:
        report = audit(None, store_engine=store.engine)
    finally:
        store.dispose()
    assert [(f.source, f.field, f.detector) for f in report.findings] == [
        ("error store: occurrence", "context.query", "card")
    ]


def test_ep_logs_audit_reports_without_echoing_and_exits_1(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EP_VAR_DIR", str(tmp_path / "var"))
    result = runner.invoke(app, ["logs", "audit", "--dir", str(log_dir), "--no-errors"])
    assert result.exit_code == 1
    assert "platform.log:2: user: email" in result.output
    assert "headers.x: github_token" in result.output
    for secret in (GITHUB, CARD, EMAIL):
        assert all(piece not in result.output for piece in secret.pieces)
    assert "hunter2" not in result.output
    assert "4 findings in 3 log files (6 lines)" in result.output


def test_ep_logs_audit_exits_0_on_clean_logs(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / "platform.log").write_text(line("2026-12-05T10:00:00.000000Z", note="fine"))
    result = runner.invoke(app, ["logs", "audit", "--dir", str(directory), "--no-errors"])
    assert result.exit_code == 0, result.output
    assert "nothing found in 1 log files (1 lines)" in result.output


def test_ep_logs_still_searches_without_a_subcommand(log_dir: Path) -> None:
    result = runner.invoke(app, ["logs", "--dir", str(log_dir), "--event", "x", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.output.count('"event": "x"') == 5


def test_periodic_auditor_counts_only_new_findings(log_dir: Path) -> None:
    registry = CollectorRegistry()
    seen: list[int] = []
    auditor = LogAuditor(log_dir, registry=registry, on_findings=lambda f: seen.append(len(f)))

    def counted(detector: str) -> float:
        value = registry.get_sample_value("log_audit_findings_total", {"detector": detector})
        return value or 0.0

    assert len(auditor.run_once()) == 4
    assert counted("email") == 1
    assert counted("github_token") == 1
    assert auditor.run_once() == []  # nothing new since the last run
    with open(log_dir / "platform.log", "a") as active:
        active.write(line("2026-12-05T12:00:00.000000Z", note=f"mail {EMAIL.text}"))
    assert [f.detector for f in auditor.run_once()] == ["email"]
    assert counted("email") == 2
    assert seen == [4, 1]
    auditor.stop()


def test_periodic_auditor_runs_in_the_background_and_stops(log_dir: Path) -> None:
    auditor = LogAuditor(log_dir, registry=CollectorRegistry(), interval=0.05).start()
    deadline = time.monotonic() + 10
    while auditor.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    auditor.stop()
    assert auditor.runs >= 1
    assert sum(auditor.found.values()) == 4


def test_one_process_per_log_directory_audits_it(log_dir: Path) -> None:
    first = LogAuditor(log_dir, registry=CollectorRegistry())
    second = LogAuditor(log_dir, registry=CollectorRegistry())
    assert len(first.run_once()) == 4
    assert second.run_once() == []  # the first one holds the directory
    first.stop()  # e.g. its worker exits
    assert len(second.run_once()) == 4  # takes over (from its own starting point)
    second.stop()
