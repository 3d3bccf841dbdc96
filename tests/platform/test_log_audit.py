"""The platform's periodic log audit: a secret that reached the log files (here a line written
by something other than the masked pipeline) is counted in log_audit_findings_total on
/metrics, reported as a `log_audit_finding` line, and fires the log_audit_findings alert."""

from __future__ import annotations

import json
import time
from pathlib import Path

from observability.logging import active_pipeline
from tests.support.platform import backend_settings, running_instance

LEAKED_TOKEN = "ghp_" + "Zq9" * 12  # 36 characters after the prefix


def test_a_leaked_token_is_counted_reported_and_alerted(tmp_path: Path) -> None:
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:").model_copy(
        update={"log_audit_interval_seconds": 0.2}
    )
    with running_instance(settings) as api:
        app = api.client.app
        observability = app.state.observability  # type: ignore[attr-defined]
        log_file = settings.log_dir / f"{settings.log_file_stem}.log"
        with open(log_file, "a") as handle:  # e.g. a sidecar appending to the same file
            handle.write(
                json.dumps({"timestamp": "2100-01-01T00:00:00.000000Z", "note": LEAKED_TOKEN})
                + "\n"
            )
        deadline = time.monotonic() + 15
        while observability.auditor.found["github_token"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert observability.auditor.found == {"github_token": 1}
        metrics = api.client.get("/metrics", headers=api.admin).text
        assert 'log_audit_findings_total{detector="github_token"} 1.0' in metrics
        evaluator = observability.evaluator
        assert evaluator.before_round is not None
        evaluator.before_round()  # the counter feed, as the evaluator's thread runs it
        evaluator.evaluate_once()
        active = evaluator.active_alerts()
        firing = [a["alertname"] for a in active if a["state"] == "firing"]
        assert "log_audit_findings" in firing
        pipeline = active_pipeline()
        assert pipeline is not None
        assert pipeline.flush(5)
    written = log_file.read_text()
    reports = [json.loads(line) for line in written.splitlines() if "log_audit_finding" in line]
    assert reports
    assert reports[0]["detector"] == "github_token"
    assert reports[0]["field"] == "note"
    assert written.count(LEAKED_TOKEN) == 1  # the report names where, never the value
