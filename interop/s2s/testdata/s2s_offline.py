#!/usr/bin/python3
"""Offline messages across servers, with slixmpp users.

Run with Debian's /usr/bin/python3 (python3-slixmpp) by interop/s2s.

  send:    one user (on the peer) logs in, sends the chat messages given as
           --message TO=BODY, in order, waits --linger seconds for error
           stanzas coming back, and reports them (id, to, from, type,
           condition, text) with the ids it gave each message.
  receive: users (on Dialtone) given as --user JID=PASSWORD log in, send
           initial presence and wait until each has --expect messages with
           a body (or --step-timeout passes); reports every message: from,
           to, body, and the XEP-0203 delay's from and stamp as sent.

Prints one JSON object on stdout; exit status 0 when the run itself worked
(what was received is for the test to judge), 1 otherwise.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time

import slixmpp

NS_DELAY = "{urn:xmpp:delay}delay"
NS_STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"


class Failure(Exception):
    pass


def client(jid, password):
    # See s2s_chat.py: no -PLUS with tls-unique.
    x = slixmpp.ClientXMPP(jid, password, sasl_mech="SCRAM-SHA-1")
    x.register_plugin("xep_0030")
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = ssl.CERT_NONE
    x.whitespace_keepalive = False
    return x


async def login(x, name, host, port, timeout):
    session = asyncio.get_event_loop().create_future()

    def fail(why):
        if not session.done():
            session.set_exception(Failure("%s: %s" % (name, why)))

    async def started(_):
        if not session.done():
            session.set_result(True)

    x.add_event_handler("session_start", started)
    x.add_event_handler("failed_auth", lambda _: fail("authentication failed"))
    x.add_event_handler("connection_failed", lambda e: fail("connection failed: %s" % e))
    x.connect(address=(host, port), force_starttls=True, disable_starttls=False)
    await asyncio.wait_for(session, timeout)


async def send(args, result):
    x = client(args.jid, args.password)
    errors = []

    def on_error(msg):
        # Read from the XML: slixmpp's error plugin knows RFC 3920's
        # conditions only, not RFC 6120's policy-violation.
        e = msg.xml.find("{jabber:client}error")
        cond = [c.tag.split("}", 1)[1] for c in (e if e is not None else [])
                if c.tag.startswith(NS_STANZAS) and c.tag != NS_STANZAS + "text"]
        text = e.find(NS_STANZAS + "text") if e is not None else None
        errors.append({
            "id": msg["id"], "from": str(msg["from"]), "to": str(msg["to"]),
            "type": e.get("type") if e is not None else None,
            "condition": cond[0] if len(cond) == 1 else " ".join(cond),
            "text": text.text if text is not None else None,
        })

    x.add_event_handler("message_error", on_error)
    await login(x, args.jid, args.host, args.port, args.step_timeout)
    sent = []
    for i, m in enumerate(args.message):
        to, body = m.split("=", 1)
        mid = "offline-%d-%d" % (int(time.time()), i)
        msg = x.make_message(mto=to, mbody=body, mtype="chat")
        msg["id"] = mid
        msg.send()
        sent.append({"id": mid, "to": to, "body": body})
        await asyncio.sleep(args.gap)
    result["sent"] = sent
    want = set(args.expect_error_to)
    deadline = time.monotonic() + args.linger
    # Wait the whole linger (errors that should not come must have had
    # their chance), but no longer than needed once every expected error
    # is in and the minimum wait passed.
    start = time.monotonic()
    while time.monotonic() < deadline:
        got = {s["to"] for s in sent for e in errors if e["id"] == s["id"]}
        if want <= got and time.monotonic() - start >= args.min_linger:
            break
        await asyncio.sleep(0.1)
    result["errors"] = errors
    x.disconnect()


async def receive(args, result):
    users = []
    for u in args.user:
        jid, password = u.split("=", 1)
        x = client(jid, password)
        got = []

        def on_message(msg, got=got):
            if not msg["body"]:
                return
            d = msg.xml.find(NS_DELAY)
            got.append({
                "from": str(msg["from"]), "to": str(msg["to"]), "type": msg["type"],
                "body": msg["body"],
                "delay_from": d.get("from") if d is not None else None,
                "delay_stamp": d.get("stamp") if d is not None else None,
            })

        x.add_event_handler("message", on_message)

        async def present(_, x=x):
            x.send_presence()

        x.add_event_handler("session_start", present)
        users.append((jid, x, got))
    await asyncio.gather(*(login(x, jid, args.host, args.port, args.step_timeout) for jid, x, _ in users))
    deadline = time.monotonic() + args.step_timeout
    while time.monotonic() < deadline and any(len(got) < args.expect for _, _, got in users):
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.settle)  # anything delivered twice would show now
    result["received"] = {jid: got for jid, _, got in users}
    for _, x, _ in users:
        x.disconnect()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["send", "receive"])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jid")
    p.add_argument("--password")
    p.add_argument("--message", action="append", default=[])
    p.add_argument("--expect-error-to", action="append", default=[])
    p.add_argument("--gap", type=float, default=0.2)
    p.add_argument("--linger", type=float, default=10)
    p.add_argument("--min-linger", type=float, default=1)
    p.add_argument("--user", action="append", default=[])
    p.add_argument("--expect", type=int, default=1)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--step-timeout", type=float, default=20)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)
    result = {"ok": False, "slixmpp": slixmpp.__version__}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete((send if args.mode == "send" else receive)(args, result))
        result["ok"] = True
    except Exception as e:  # report every failure as JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
