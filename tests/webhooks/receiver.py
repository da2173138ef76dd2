#!/usr/bin/env python3
"""A real webhook receiver for Palisade's integration tests.

It checks each delivery the way a customer would: the Standard Webhooks signature
(`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the `standardwebhooks` package,
and `X-Palisade-Signature` (`sha256=<hex>`, several space-separated during secret rotation) as
HMAC-SHA256 of the raw body, keyed with the base64-decoded part of the secret after `whsec_`.
Either passes if any configured secret verifies it: each `--secret`, and each line of
`--secrets-file` (re-read on every request, so a test can start the receiver first, create the
endpoint at its URL, then hand it the secret the server generated).

Every POST is appended to `--log` as one JSON line: webhook_id, timestamp, received_at,
std_ok, palisade_ok, signatures, palisade_signature, body (parsed JSON or null), status.
It answers 204 when both signatures verify, else 401; but if `--status-file` holds an integer
it answers that status instead (re-read on every request, so a test can take the receiver
"down" and back "up" without restarting it).

    receiver.py --port 0 --log FILE [--secret whsec_... ...] [--secrets-file FILE]
                [--status-file FILE]

Binds 127.0.0.1 only and prints `listening <port>` once ready.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def secret_key(secret):
    """The HMAC key of a `whsec_` secret (padding optional, as standardwebhooks accepts)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")


def std_verified(webhooks, body, headers):
    for webhook in webhooks:
        try:
            webhook.verify(body, headers, json_parse=False)
            return True
        except Exception:  # a malformed header is a failed verification, not a crash
            continue
    return False


def palisade_verified(keys, body, header):
    if not header:
        return False
    expected = [hmac.new(key, body, hashlib.sha256).digest() for key in keys]
    for value in header.split():
        scheme, _, hex_digest = value.partition("=")
        if scheme != "sha256":
            continue
        try:
            given = bytes.fromhex(hex_digest)
        except ValueError:
            continue
        if any(hmac.compare_digest(given, digest) for digest in expected):
            return True
    return False


def forced_status(path):
    """The status the status file asks for, or None when there is no usable one."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def secrets(args):
    """The `--secret` values, then the secrets file's lines (as it is now)."""
    found = list(args.secret or [])
    if args.secrets_file:
        try:
            with open(args.secrets_file, encoding="utf-8") as f:
                found += [line.strip() for line in f if line.strip()]
        except OSError:
            pass
    return found


def make_handler(args, log, lock):

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections alive, as Palisade's pooled client expects.
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            trusted = secrets(args)
            webhooks = [Webhook(secret) for secret in trusted]
            keys = [secret_key(secret) for secret in trusted]
            std_ok = std_verified(webhooks, body, headers)
            palisade_ok = palisade_verified(keys, body, self.headers.get("X-Palisade-Signature"))

            status = forced_status(args.status_file)
            if status is not None:
                reply = b'{"error":"down"}'
            elif std_ok and palisade_ok:
                status, reply = 204, b""
            else:
                status, reply = 401, b'{"error":"bad signature"}'

            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            line = json.dumps({
                "webhook_id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "received_at": time.time(),
                "std_ok": std_ok,
                "palisade_ok": palisade_ok,
                "signatures": self.headers.get("webhook-signature"),
                "palisade_signature": self.headers.get("X-Palisade-Signature"),
                "body": parsed,
                "status": status,
            }) + "\n"
            # Logged before answering, so a test that saw the response finds the line.
            with lock:
                log.write(line)
                log.flush()

            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            if status != 204:
                self.wfile.write(reply)

        def log_message(self, format, *args):
            pass  # the JSON log is the record; keep stderr quiet

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A sender closing its kept-alive connection (a server stopped or killed) is normal."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--secret", action="append")
    parser.add_argument("--secrets-file")
    parser.add_argument("--status-file")
    args = parser.parse_args()

    with open(args.log, "a", encoding="utf-8") as log:
        server = Server(("127.0.0.1", args.port), make_handler(args, log, threading.Lock()))
        print(f"listening {server.server_address[1]}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
