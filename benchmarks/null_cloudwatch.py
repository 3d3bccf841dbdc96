"""A CloudWatch Logs stand-in for benchmarks that accepts every call and does nothing.

Why not moto here: the benchmark puts the stand-in on the client's core, and moto spends tens
of microseconds of Python per stored event there, taking CPU from wrk, so a slower client reads
as a slower server. Real CloudWatch costs this machine nothing. Correctness of what is shipped
is the tests' job (tests/integration/test_cloudwatch_shipper.py, against moto).

Run:  python benchmarks/null_cloudwatch.py PORT   (answers 200 {} on 127.0.0.1:PORT)
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
