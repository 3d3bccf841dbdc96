"""What `ep serve --workers N` must do, as a runnable module for the multi-process test:
prepare the multi-process directory in the parent, then let uvicorn spawn the workers.

python -m tests.observability.prometheus.serve_mp PORT WORKERS DIRECTORY
"""

from __future__ import annotations

import sys

import uvicorn

from observability.metrics.prometheus import prepare_multiprocess_dir


def main() -> None:
    port, workers, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    prepare_multiprocess_dir(directory)  # before any worker imports prometheus_client
    uvicorn.run(
        "tests.observability.prometheus.apps:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
