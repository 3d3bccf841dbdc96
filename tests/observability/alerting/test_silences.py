"""Silences: matchers, author/reason/expiry, persistence in SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from observability.alerting.silences import Matcher, SilenceStore

NOW = 1_767_571_200.0


def test_matchers_parse_and_match_like_alertmanager() -> None:
    assert Matcher.parse('severity="critical"') == Matcher("severity", "=", "critical")
    assert Matcher.parse("alertname=~api_.*").matches({"alertname": "api_latency_page"})
    assert not Matcher.parse("alertname=~api").matches({"alertname": "api_latency"})  # anchored
    assert Matcher.parse("service!=batch").matches({})
    assert Matcher.parse('dependency!~"db|cache"').matches({"dependency": "queue"})
    with pytest.raises(ValueError, match="not a matcher"):
        Matcher.parse("no operator here")
    with pytest.raises(Exception, match=r"unterminated|missing"):
        Matcher.parse("a=~(")


def test_create_requires_author_reason_matchers_and_a_future_end() -> None:
    store = SilenceStore(clock=lambda: NOW)
    with pytest.raises(ValueError, match="author"):
        store.create(["a=b"], author=" ", reason="x", duration_s=60)
    with pytest.raises(ValueError, match="matcher"):
        store.create([], author="al", reason="x", duration_s=60)
    with pytest.raises(ValueError, match="end after"):
        store.create(["a=b"], author="al", reason="x", ends_at=NOW - 1)


def test_silences_persist_list_and_expire(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    clock = [NOW]
    store = SilenceStore(engine, clock=lambda: clock[0])
    store.create_schema()
    silence = store.create(
        ['alertname="disk_saturation"', 'mount="/data"'],
        author="alice",
        reason="resizing the volume",
        duration_s=3600,
    )
    later = store.create(["severity=low"], author="bob", reason="noise", duration_s=60)

    reopened = SilenceStore(engine, clock=lambda: clock[0])  # e.g. after a restart
    assert {s.id for s in reopened.list()} == {silence.id, later.id}
    loaded = next(s for s in reopened.list() if s.id == silence.id)
    assert (loaded.author, loaded.reason, loaded.matchers) == (
        "alice",
        "resizing the volume",
        silence.matchers,
    )
    labels = {"alertname": "disk_saturation", "mount": "/data", "severity": "high"}
    assert [s.id for s in reopened.muted_by(labels, NOW + 10)] == [silence.id]
    assert reopened.muted_by({**labels, "mount": "/"}, NOW + 10) == []

    assert reopened.expire(silence.id)
    assert not reopened.expire(silence.id)  # already over
    assert reopened.muted_by(labels, NOW + 10) == []
    assert {s.id for s in reopened.list()} == {later.id}
    assert {s.id for s in reopened.list(include_expired=True)} == {silence.id, later.id}

    clock[0] = NOW + 120  # bob's one-minute silence ran out by itself
    assert reopened.list() == []
    engine.dispose()


def test_a_future_silence_is_listed_but_not_yet_active() -> None:
    store = SilenceStore(clock=lambda: NOW)
    silence = store.create(
        ["a=b"], author="al", reason="window", starts_at=NOW + 600, duration_s=60
    )
    assert store.list() == [silence]
    assert store.muted_by({"a": "b"}, NOW) == []
    assert store.muted_by({"a": "b"}, NOW + 630) == [silence]
