#!/usr/bin/env python3
"""otlp_collector.py - an OTLP/HTTP JSON collector stand-in for the integration tests.

Usage: otlp_collector.py [--out FILE] [MODE]

MODE is one of
  normal        answer 200 {} (the default)
  500           answer 500 to every export
  status CODE   answer CODE (e.g. 429, 400) to every export
  slow SECONDS  wait SECONDS, then answer 200

It listens on 127.0.0.1, on a port of the kernel's choice, and prints that
port alone on the first line of stdout (flushed) before anything else.

Every export POSTed to /v1/traces with Content-Type application/json is
parsed (strict UTF-8, then JSON) and written, whatever the mode and before
the answer, as one compact JSON line to FILE (appended, flushed per line)
or, without --out, to stdout after the port line.  So in mode 500 each try
of a retried batch is one line.  A body that is not valid UTF-8 JSON gets
400 and a line on stderr, not a line in the output; another path gets 404.
SIGTERM or SIGINT ends it with status 0.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY_MAX = 64 << 20


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="append the exports here, not to stdout")
    p.add_argument("mode", nargs="*", default=["normal"],
                   help="normal | 500 | status CODE | slow SECONDS")
    a = p.parse_args(argv)
    m = a.mode
    if m == ["normal"]:
        a.status, a.delay = 200, 0.0
    elif m == ["500"]:
        a.status, a.delay = 500, 0.0
    elif len(m) == 2 and m[0] == "status" and m[1].isdigit() and 100 <= int(m[1]) <= 599:
        a.status, a.delay = int(m[1]), 0.0
    elif len(m) == 2 and m[0] == "slow":
        a.status, a.delay = 200, float(m[1])
    else:
        p.error("unknown mode %r" % " ".join(m))
    return a


class Sink:
    """One line per export, whole lines only, whichever thread writes."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8") if path else sys.stdout

    def write(self, doc):
        line = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


def make_handler(status, delay, sink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive, as a collector does

        def log_message(self, fmt, *args):
            pass

        def answer(self, code, body=b"{}"):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read_body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0 or n > BODY_MAX:
                raise ValueError("bad Content-Length %d" % n)
            return self.rfile.read(n)

        def do_POST(self):
            try:
                body = self.read_body()
            except ValueError as e:
                self.close_connection = True
                return self.answer(400, json.dumps({"error": str(e)}).encode())
            if self.path != "/v1/traces":
                return self.answer(404)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                if ctype != "application/json":
                    raise ValueError("Content-Type %r" % ctype)
                doc = json.loads(body.decode("utf-8", errors="strict"))
            except ValueError as e:   # UnicodeDecodeError and JSONDecodeError too
                print("otlp_collector: invalid export: %s" % e, file=sys.stderr, flush=True)
                return self.answer(400, json.dumps({"error": str(e)}).encode())
            sink.write(doc)
            if delay > 0:
                time.sleep(delay)
            self.answer(status)

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True   # the exporter gave up: fine

    return Handler


def main(argv):
    a = parse_args(argv)
    sink = Sink(a.out)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(a.status, a.delay, sink))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)

    def stop(signum, frame):
        # shutdown() waits for serve_forever: not from its own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
