"""A Herald webhook receiver with Python's standard library only.
HERALD_WEBHOOK_SECRET: the server's webhook_secret; PORT: where to listen
(default 9000). Prints each verified event as one JSON line."""

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["HERALD_WEBHOOK_SECRET"].encode()
TOLERANCE = 300            # seconds: older signatures are refused (replays)


def verify(secret, signature_header, body, now=None, tolerance=TOLERANCE):
    """True when Herald-Signature "t=<unix s>,v1=<hex>" is the HMAC-SHA256
    of "<t>.<body>" with the secret, and t is recent."""
    try:
        parts = dict(p.split("=", 1) for p in signature_header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError, AttributeError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance:
        return False
    expected = hmac.new(secret, b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)   # constant time


seen = set()               # ids already handled (keep them in your database)
lock = threading.Lock()    # requests are handled on several threads


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(SECRET, self.headers.get("Herald-Signature", ""), body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        # At least once: a retry carries the same id; handle it only once.
        with lock:
            if event["id"] not in seen:
                seen.add(event["id"])
                print(json.dumps(event), flush=True)
        self.send_response(204)    # any 2xx: delivered
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", 9000))),
                                 Receiver)
    print("listening", flush=True)
    server.serve_forever()
