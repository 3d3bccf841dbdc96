"""An application that ships through the agent does not load boto3: the agent process does."""

from __future__ import annotations

import subprocess
import sys


def test_the_application_side_of_shipping_never_imports_boto3() -> None:
    code = (
        "import sys\n"
        "import observability.cloud.agent, observability.cloud.sink\n"
        "print('boto3' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
