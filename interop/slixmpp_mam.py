#!/usr/bin/python3
"""Two slixmpp clients: A writes to B, B pages through its archive (XEP-0313).

interop/slixmpp_test.go runs it. B receives A's messages with a XEP-0359
stanza-id by its bare JID; then slixmpp's xep_0313 plugin reads B's archive
with A newest first in pages of 4 (RSM <before/>), and oldest first from a
start time. The archive ids must be the stanza-ids B received, each message
once, in order. Prints one JSON object: {"ok": true, ...} or "ok": false
with "error". Exit 0 on success.

  /usr/bin/python3 interop/slixmpp_mam.py --port 5222 --domain localhost \\
      --a +821012345678 --a-password PW --b +821098765432 --b-password PW
"""

import argparse
import asyncio
import datetime
import json
import sys
import time

import slixmpp

from slixmpp_chat import Client, Failure, until

N = 10


async def run(args, result):
    a_bare = "%s@%s" % (args.a, args.domain)
    b_bare = "%s@%s" % (args.b, args.domain)
    deadline = time.monotonic() + args.timeout - 5
    a = Client("A", a_bare + "/mam", args.a_password, "SCRAM-SHA-256")
    b = Client("B", b_bare + "/mam", args.b_password, "SCRAM-SHA-256")
    for c in (a, b):
        c.xmpp.register_plugin("xep_0059")
        c.xmpp.register_plugin("xep_0313")
        c.xmpp.register_plugin("xep_0359")
    received = {}  # body -> stanza-id by B

    def on_message(msg):
        if msg["body"]:
            for sid in msg.xml.findall("{urn:xmpp:sid:0}stanza-id"):
                if sid.get("by") == b_bare:
                    received[msg["body"]] = sid.get("id")

    b.xmpp.add_event_handler("message", on_message)
    try:
        await asyncio.gather(a.login(args.host, args.port), b.login(args.host, args.port))
        info = await b.xmpp["xep_0030"].get_info(jid=b_bare, timeout=10)
        features = info["disco_info"]["features"]
        for f in ("urn:xmpp:mam:2", "urn:xmpp:sid:0"):
            if f not in features:
                raise Failure("disco of %s lacks %s: %s" % (b_bare, f, features))
        result["steps"].append("disco")
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        bodies = ["message %d" % i for i in range(N)]
        for body in bodies:
            a.xmpp.send_message(mto=b_bare, mbody=body, mtype="chat")
        await until("B received every message with its stanza-id", lambda: len(received) == N, deadline)
        result["steps"].append("received with stanza-ids")

        newest_first = []
        async for msg in b.xmpp["xep_0313"].iterate(with_jid=slixmpp.JID(a_bare), reverse=True, rsm={"max": 4}):
            newest_first.append((msg["mam_result"]["id"], msg["mam_result"]["forwarded"]["stanza"]["body"]))
        want = [(received[body], body) for body in reversed(bodies)]
        if newest_first != want:
            raise Failure("newest first: %s, want %s" % (newest_first, want))
        result["steps"].append("paged newest first")

        oldest_first = []
        async for msg in b.xmpp["xep_0313"].iterate(start=start, rsm={"max": 3}):
            oldest_first.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
        if oldest_first != bodies:
            raise Failure("oldest first: %s, want %s" % (oldest_first, bodies))
        result["steps"].append("paged oldest first")

        sent = []
        async for msg in a.xmpp["xep_0313"].iterate(with_jid=slixmpp.JID(b_bare)):
            sent.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
        if sent != bodies:
            raise Failure("A's archive: %s, want %s" % (sent, bodies))
        result["steps"].append("sender archived")
    finally:
        await asyncio.gather(a.close(), b.close())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--a", required=True)
    p.add_argument("--a-password", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--b-password", required=True)
    p.add_argument("--timeout", type=float, default=60, help="seconds for everything")
    args = p.parse_args()
    result = {"ok": False, "slixmpp": slixmpp.__version__, "steps": []}
    try:
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout))
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure is reported in the JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
