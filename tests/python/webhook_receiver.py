"""A webhook receiver as a Python app backend writes one with the PyPI `pusher`
SDK: each request is checked with `Pusher.validate_webhook(key, signature, body)`.

Usage: webhook_receiver.py '{"app_id": ..., "key": ..., "secret": ...,
                             "fail_first": N, "fail_status": S}'

Listens on 127.0.0.1, on a port the kernel picks, and reports on stdout, one
JSON object per line: {"type": "ready", "port": P} once listening, then for
each request {"type": "request", "valid", "status", "body", "events"?}, where
`status` is what it answered (`fail_status`, default 500, to the first
`fail_first` requests, then 200) and `events` is what the SDK read, when valid.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pusher


def report(**fields):
    print(json.dumps(fields), flush=True)


def main():
    options = json.loads(sys.argv[1])
    backend = pusher.Pusher(
        app_id=options["app_id"], key=options["key"], secret=options["secret"]
    )
    fail_first = options.get("fail_first", 0)
    fail_status = options.get("fail_status", 500)
    lock = threading.Lock()
    requests = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length).decode("utf-8")
            key = self.headers.get("X-Pusher-Key")
            signature = self.headers.get("X-Pusher-Signature")
            # The SDK wants text for each: a request without the headers is invalid.
            data = None
            if key is not None and signature is not None:
                data = backend.validate_webhook(key=key, signature=signature, body=body)
            with lock:
                requests[0] += 1
                status = fail_status if requests[0] <= fail_first else 200
            report(
                type="request",
                valid=data is not None,
                status=status,
                body=body,
                events=data["events"] if data is not None else None,
            )
            answer = b"ok" if status == 200 else b"not now"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            # Access logs would go to stderr; the reports on stdout say it all.
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    report(type="ready", port=server.server_address[1])
    # The test closes stdin (or stops the process group) when it is done.
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
