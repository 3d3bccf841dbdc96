"""checkov, the infrastructure-as-code scanner, finds nothing wrong with the CloudFormation
stack: every finding is fixed in the generator or justified in docs/cloudwatch.md with a skip
comment in the template (today there are none to justify)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from observability.cloud.provisioning import build_template, render_yaml
from tests.observability.cloud.test_provisioning import COMMITTED, ROOT, sample_definitions
from tests.support.servers import unavailable

# checkov's pins clash with the app's (boto3, packaging): `make install` gives it its own venv.
CHECKOV = Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"
DOCS = ROOT / "docs" / "cloudwatch.md"


def checkov(path: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        unavailable(f"{CHECKOV} is missing: run `make install`")
    result = subprocess.run(
        [str(CHECKOV), "-f", str(path), "--framework", "cloudformation", "--skip-download",
         "--compact", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        # --skip-download and BC_SKIP_MAPPING keep it offline (no guideline or policy fetch).
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""},
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def justified_skips() -> set[str]:
    """Check ids docs/cloudwatch.md explains under "checkov findings we accept"."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### checkov findings we accept", 1)[-1].split("\n## ", 1)[0]
    return set(re.findall(r"`(CKV2?_AWS_\d+)`", section))


@pytest.mark.parametrize("which", ["committed", "sample"])
def test_checkov_reports_no_unexplained_finding(which: str, tmp_path: Path) -> None:
    if which == "committed":
        path = COMMITTED
    else:  # every resource type the generator can emit (alarms, dashboards, queries)
        path = tmp_path / "sample.yaml"
        path.write_text(render_yaml(build_template(sample_definitions())), encoding="utf-8")
    report = checkov(path)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    # The checks the issue names really ran against our resources (not a vacuous pass).
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    assert {"CKV_AWS_158", "CKV_AWS_26", "CKV_AWS_7"} <= passed, passed
    # A skip needs its justification in the docs (a `checkov:skip=` comment in the template).
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert skipped <= justified_skips(), skipped - justified_skips()
