"""A webhook receiver for the integration tests (tests/it/webhooks.rs).

It verifies every delivery's signature with PyPI's `standardwebhooks` (the reference library
of the Standard Webhooks spec) against each secret it was given, records every request, and
answers as the request's path says, to exercise the sender's retries:

  /hook/ok                 200
  /hook/fail-N/...         500 to the first N requests of each webhook-id, then 200
  /hook/retry-after-S/...  503 with `Retry-After: S` (seconds) to the first request, then 200
  /hook/retry-date-S/...   the same with an HTTP date S seconds ahead
  /hook/slow-S/...         sleeps S seconds before its 200 on the first request, then 200
  /hook/hold-S/...         sleeps S seconds before every 200
  /hook/gone/...           410
A request no secret verifies is answered 401.

Control: `POST /_secrets` with `{"secrets": [...]}` sets the secrets; `GET /_deliveries` lists
what was received. It prints `listening on PORT` once it listens (on 127.0.0.1, `--port 0`: a
free port), and runs until killed.
"""

import argparse
import email.utils
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
secrets = []
deliveries = []
seen = {}  # (mode, webhook-id) -> requests so far


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_deliveries":
            with lock:
                body = json.dumps(deliveries).encode()
            self.answer(200, body, [("Content-Type", "application/json")])
        else:
            self.answer(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/_secrets":
            with lock:
                secrets[:] = json.loads(body)["secrets"]
            self.answer(204)
            return
        if not self.path.startswith("/hook/"):
            self.answer(404)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        text = body.decode()
        with lock:
            keys = list(secrets)
        verified = []
        for i, secret in enumerate(keys):
            try:
                Webhook(secret).verify(text, headers)
                verified.append(i)
            except Exception:
                pass
        mode = self.path.split("/")[2]
        webhook_id = headers.get("webhook-id", "")
        with lock:
            n = seen.get((mode, webhook_id), 0)
            seen[(mode, webhook_id)] = n + 1
            record = {
                "path": self.path,
                "webhook_id": webhook_id,
                "timestamp": headers.get("webhook-timestamp"),
                "signature": headers.get("webhook-signature"),
                "content_type": headers.get("content-type"),
                "body": text,
                "verified": verified,
                "received_at": time.time(),
                "status": None,
            }
            deliveries.append(record)
        status, extra = self.decide(mode, n, verified)
        with lock:
            record["status"] = status
        try:
            self.answer(status, b"", extra)
        except OSError:
            pass  # the sender went away (it timed out, or was killed)

    def decide(self, mode, n, verified):
        if not verified:
            return 401, []
        name, _, arg = mode.partition("-")
        if mode == "ok":
            return 200, []
        if mode == "gone":
            return 410, []
        if mode.startswith("fail-"):
            return (500, []) if n < int(mode[5:]) else (200, [])
        if mode.startswith("retry-after-"):
            return (503, [("Retry-After", mode[12:])]) if n == 0 else (200, [])
        if mode.startswith("retry-date-"):
            when = email.utils.formatdate(time.time() + float(mode[11:]), usegmt=True)
            return (503, [("Retry-After", when)]) if n == 0 else (200, [])
        if mode.startswith("slow-"):
            if n == 0:
                time.sleep(float(mode[5:]))
            return 200, []
        if mode.startswith("hold-"):
            time.sleep(float(mode[5:]))
            return 200, []
        return 404, []


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
