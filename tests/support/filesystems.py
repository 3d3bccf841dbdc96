"""A real, small, fillable filesystem for disk-full tests: a tmpfs with `size=` (needs root, as
on these machines and in CI). Without one the test fails under CI=true and skips elsewhere."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import in_ci


@contextlib.contextmanager
def small_filesystem(size_kib: int) -> Iterator[Path]:
    mountpoint = Path(tempfile.mkdtemp(prefix="ep-small-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0777", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        message = f"cannot mount a {size_kib} KiB tmpfs (root needed): {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of `directory` with one file, leaving about `leave_bytes` free;
    delete the returned file to give the space back."""
    ballast = directory / "ballast.bin"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            while os.write(fd, chunk):
                pass
        if leave_bytes:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave_bytes))
    finally:
        os.close(fd)
    return ballast
