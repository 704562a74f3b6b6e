#!/usr/bin/python3
"""Two slixmpp users on two federated servers subscribe to each other,
see each other's presence and exchange messages.

Run with Debian's /usr/bin/python3 (python3-slixmpp) by interop/s2s.
A is the initiator (it asks for the subscription and writes first); B's
client accepts and subscribes back, as a user clicking "accept" would.

Steps (each one a "step" of the JSON printed on stdout):
  1. both log in (STARTTLS; the test certificates are accepted as they are);
  2. A subscribes to B; B's client approves and subscribes back; both
     rosters reach subscription "both";
  3. each sees the other available;
  4. A -> B and B -> A chat messages arrive, from the other's bare JID.

Exit status 0 when every step passed, 1 otherwise; bounded by --timeout.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time

import slixmpp


class Failure(Exception):
    pass


class User:
    def __init__(self, name, jid, password, host, port):
        self.name = name
        self.host, self.port = host, port
        # SCRAM-SHA-1 without channel binding: every server here has it,
        # and slixmpp 1.8 would try -PLUS with tls-unique, which TLS 1.3
        # lacks and Dialtone does not offer (it fails the login).
        x = slixmpp.ClientXMPP(jid, password, sasl_mech="SCRAM-SHA-1")
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0199")
        x.ssl_context.check_hostname = False
        x.ssl_context.verify_mode = ssl.CERT_NONE
        x.whitespace_keepalive = False
        x.auto_authorize = True
        x.auto_subscribe = True
        self.xmpp = x
        self.bare = slixmpp.JID(jid).bare
        self.session = asyncio.get_event_loop().create_future()
        self.messages = []
        self.available = set()
        x.add_event_handler("session_start", self._start)
        x.add_event_handler("failed_auth", lambda _: self._fail("authentication failed"))
        x.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))
        x.add_event_handler("message", self._message)
        x.add_event_handler("presence_available", self._available)

    def _fail(self, why):
        if not self.session.done():
            self.session.set_exception(Failure("%s: %s" % (self.name, why)))

    async def _start(self, _):
        await self.xmpp.get_roster()
        self.xmpp.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.append((msg["from"].bare, msg["to"].bare, msg["body"]))

    def _available(self, pres):
        self.available.add(pres["from"].bare)

    def subscription(self, bare):
        roster = self.xmpp.client_roster
        if bare not in roster:
            return None
        return roster[bare]["subscription"]


async def until(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.1)
    raise Failure("timed out waiting for " + what)


async def run(args, steps):
    a = User("A", args.a, args.a_password, args.a_host, args.a_port)
    b = User("B", args.b, args.b_password, args.b_host, args.b_port)
    t = args.step_timeout
    for u in (a, b):
        u.xmpp.connect(address=(u.host, u.port), force_starttls=True, disable_starttls=False)
    for u in (a, b):
        await asyncio.wait_for(u.session, t)
    steps.append({"step": "login", "ok": True})

    a.xmpp.send_presence(pto=b.bare, ptype="subscribe")
    await until("subscription both at A (%s)" % a.bare, lambda: a.subscription(b.bare) == "both", t)
    await until("subscription both at B (%s)" % b.bare, lambda: b.subscription(a.bare) == "both", t)
    steps.append({"step": "subscribed", "ok": True, "a": a.subscription(b.bare), "b": b.subscription(a.bare)})

    await until("A sees B available", lambda: b.bare in a.available, t)
    await until("B sees A available", lambda: a.bare in b.available, t)
    steps.append({"step": "presence", "ok": True})

    a.xmpp.send_message(mto=b.bare, mbody="hello from A", mtype="chat")
    await until("B gets A's message", lambda: any(m[0] == a.bare and m[2] == "hello from A" for m in b.messages), t)
    b.xmpp.send_message(mto=a.bare, mbody="hello from B", mtype="chat")
    await until("A gets B's message", lambda: any(m[0] == b.bare and m[2] == "hello from B" for m in a.messages), t)
    steps.append({"step": "messages", "ok": True})

    for u in (a, b):
        u.xmpp.disconnect()


def main():
    p = argparse.ArgumentParser()
    for who in ("a", "b"):
        p.add_argument("--" + who, required=True)
        p.add_argument("--%s-password" % who, required=True)
        p.add_argument("--%s-host" % who, required=True)
        p.add_argument("--%s-port" % who, type=int, required=True)
    p.add_argument("--step-timeout", type=float, default=20)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)
    steps = []
    result = {"ok": False, "steps": steps, "slixmpp": slixmpp.__version__}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run(args, steps))
        result["ok"] = True
    except Exception as e:  # report every failure as JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
