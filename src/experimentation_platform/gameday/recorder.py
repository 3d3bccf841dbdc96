"""The game day's Slack and PagerDuty stand-in: a local HTTP server that records every
notification a started instance sends (POST /<receiver>/<scenario>)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Recorder"]

LOOPBACK = "127.0.0.1"
_MAX_BODY = 1 << 20  # a notification is a few KB; anything bigger is not one of ours


@dataclass(frozen=True)
class Received:
    at: float
    receiver: str  # "pagerduty" or "slack"
    scenario: str
    status: str  # "firing" or "resolved"
    title: str
    body: dict[str, Any]


class Recorder:
    """Slack and PagerDuty stand-in on 127.0.0.1: records every POST at /<receiver>/<scenario>."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self.send_response(413)
                    self.end_headers()
                    return
                recorder._record(self.path, self.rfile.read(length))
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"success"}')

            def log_message(self, format: str, *args: object) -> None:
                return  # the report says what arrived; no per-request stderr noise

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, path: str, raw: bytes) -> None:
        parts = path.strip("/").split("/")
        receiver, scenario = [*parts, "", ""][:2]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"raw": raw.decode("utf-8", "replace")}
        if receiver == "pagerduty":
            status = "resolved" if body.get("event_action") == "resolve" else "firing"
            title = str((body.get("payload") or {}).get("summary") or body.get("dedup_key", ""))
        else:
            text = str(body.get("text", ""))
            status = "resolved" if text.startswith("RESOLVED") else "firing"
            title = text
        with self._lock:
            self.received.append(Received(time.time(), receiver, scenario, status, title, body))

    def for_scenario(self, scenario: str, since: float = 0.0) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.scenario == scenario and r.at >= since]
