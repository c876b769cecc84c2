"""A real SMTP server on loopback for the end-to-end tests (Debian's python3-aiosmtpd).

Usage: /usr/bin/python3 smtp_sink.py PORT DIR
Each accepted message is written to DIR as NNNNNN.eml (the raw message) with the envelope in
NNNNNN.json ({"mail_from", "rcpt_tos", "received_at", and the decoded "subject", "to", "cc",
"text", "html", "attachments": [{"filename", "content_type", "data_base64"}]}), decoded here with
Python's email package so the tests need no MIME parser. It prints "ready" once listening and
runs until it is killed.
"""

import base64
import email
import email.policy
import json
import os
import signal
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        base = os.path.join(self.out, "%06d" % self.n)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        attachments = [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "data_base64": base64.b64encode(part.get_payload(decode=True) or b"").decode(),
            }
            for part in msg.iter_attachments()
        ]
        with open(base + ".json.tmp", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "received_at": time.time(),
                    "subject": str(msg["subject"] or ""),
                    "to": str(msg["to"] or ""),
                    "cc": str(msg["cc"] or ""),
                    "text": text.get_content() if text else "",
                    "html": html.get_content() if html else "",
                    "attachments": attachments,
                },
                f,
                ensure_ascii=False,
            )
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 Message accepted for delivery"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    existing = [f for f in os.listdir(out) if f.endswith(".json")]
    sink = Sink(out)
    sink.n = len(existing)
    c = Controller(sink, hostname="127.0.0.1", port=port)
    c.start()
    print("ready", flush=True)
    try:
        # Wait for the kill without a timed sleep: under `.ci/date-sweep` (libfaketime with the
        # real monotonic clock) Python's time.sleep fails with EINVAL.
        while True:
            signal.pause()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
