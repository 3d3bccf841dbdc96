"""Opening a CloudWatch shipper for this process: one journal per worker slot.

Each worker takes the first slot whose journal no live process holds (the journal's lock). A
restarted worker takes a free slot and replays what its predecessor left unshipped; several
workers of one server never write into each other's journal.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from observability.cloud.agent import ShippingAgent
from observability.cloud.events import LogShipper, ShipperConfig
from observability.cloud.journal import JournalLockedError
from observability.cloud.shipper import CloudWatchShipper

__all__ = ["MAX_SLOTS", "open_shipper"]

MAX_SLOTS = 256


def open_shipper(
    base: ShipperConfig, journal_root: Path, *, agent: bool = True, slots: int = MAX_SLOTS
) -> LogShipper:
    """A started shipper (`ShippingAgent` process, or an in-process `CloudWatchShipper` thread
    when `agent` is False) over the first free journal under `journal_root/worker-N`."""
    for slot in range(slots):
        config = dataclasses.replace(base, journal_dir=journal_root / f"worker-{slot}")
        try:
            if agent:
                return ShippingAgent(config).start()
            return CloudWatchShipper(config).start()
        except JournalLockedError:
            continue
    raise RuntimeError(
        f"{slots} CloudWatch journals under {journal_root} are held by live processes"
    )
