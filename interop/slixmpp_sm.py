#!/usr/bin/python3
"""Stream management (XEP-0198) and client state indication (XEP-0352)
with slixmpp's own plugins, against a Dialtone server.

interop/slixmpp_test.go runs it after making two accounts. It reuses
slixmpp_chat.py's client. Steps (each a "step" of the JSON printed):
  1. A logs in with xep_0198 and xep_0352: stream management is enabled
     with resumption, CSI is offered;
  2. B sends A five messages; A gets them;
  3. A's TCP connection is cut (no stream close); B sends five more;
  4. A reconnects and slixmpp resumes the stream (no new bind): the
     session's full JID is the same, A gets the five it missed, no
     message twice, in order, then a fence message;
  5. A says it is inactive; B sends two chat states and a message: A gets
     only the latest chat state, then the message; then A is active.

It prints one JSON object and exits 0 when every step passed.

  /usr/bin/python3 interop/slixmpp_sm.py --port 5222 \\
      --a +821012345678 --a-password PW1 --b +821098765432 --b-password PW2
"""

import argparse
import asyncio
import json
import logging
import sys
import time

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from slixmpp_chat import Client, Failure, until


class SMClient(Client):
    """A client with stream management and CSI that records message ids."""

    def __init__(self, *args):
        super().__init__(*args)
        self.xmpp.register_plugin("xep_0198")
        self.xmpp.register_plugin("xep_0352")
        self.ids = []
        self.enabled = asyncio.get_event_loop().create_future()
        self.resumed = None
        self.csi = False
        # Every message, chat states alone included (the "message" event
        # is for messages with a body).
        self.xmpp.register_handler(Callback("every message", StanzaPath("message"), lambda m: self.ids.append(m["id"])))
        self.xmpp.add_event_handler("sm_enabled", self._enabled)
        self.xmpp.add_event_handler("sm_failed", lambda s: self._fail("sm failed: %s" % s))
        self.xmpp.add_event_handler("session_resumed", self._resumed)
        self.xmpp.add_event_handler("csi_enabled", self._csi)

    def _enabled(self, _):
        if not self.enabled.done():
            self.enabled.set_result(True)

    def _resumed(self, _):
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(True)

    def _csi(self, _):
        self.csi = True


def chat(to, mid, inner):
    return "<message xmlns='jabber:client' type='chat' to='%s' id='%s'>%s</message>" % (to, mid, inner)


async def run(args, result):
    a_bare = "%s@%s" % (args.a, args.domain)
    b_bare = "%s@%s" % (args.b, args.domain)
    deadline = time.monotonic() + args.timeout - 5

    def step(name, **info):
        result["steps"].append(dict(step=name, **info))

    a = SMClient("A", a_bare + "/phone", args.a_password, "SCRAM-SHA-256")
    b = Client("B", b_bare + "/b", args.b_password, "SCRAM-SHA-256")
    try:
        # 1.
        await asyncio.gather(a.login(args.host, args.port), b.login(args.host, args.port))
        await asyncio.wait_for(a.enabled, 10)
        sm = a.xmpp["xep_0198"]
        if not sm.sm_id:
            raise Failure("stream management enabled without resumption")
        if not a.csi:
            raise Failure("no CSI feature")
        full = str(a.xmpp.boundjid)
        step("enabled", sm_id=sm.sm_id, jid=full)

        # 2.
        for i in range(5):
            b.xmpp.send_raw(chat(full, "m%d" % i, "<body>m%d</body>" % i))
        await until("the first five", lambda: len([i for i in a.ids if i.startswith("m")]) >= 5, deadline)
        step("five delivered", handled=sm.handled)

        # 3.
        a.disconnected.clear()
        a.xmpp.abort()
        await asyncio.wait_for(a.disconnected.wait(), 10)
        for i in range(5, 10):
            b.xmpp.send_raw(chat(full, "m%d" % i, "<body>m%d</body>" % i))
        await b.xmpp["xep_0199"].ping(jid=args.domain, timeout=10)  # B's were routed
        step("connection cut", handled=sm.handled)

        # 4.
        a.resumed = asyncio.get_event_loop().create_future()
        a.connect(args.host, args.port)
        await asyncio.wait_for(a.resumed, 15)
        if str(a.xmpp.boundjid) != full:
            raise Failure("resumed as %s, was %s" % (a.xmpp.boundjid, full))
        b.xmpp.send_raw(chat(full, "fence", "<body>fence</body>"))
        await until("the fence", lambda: "fence" in a.ids, deadline)
        want = ["m%d" % i for i in range(10)] + ["fence"]
        if a.ids != want:
            raise Failure("after resuming, got %s, want %s" % (a.ids, want))
        step("resumed", ids=a.ids)

        # 5.
        a.xmpp["xep_0352"].send_inactive()
        await a.xmpp["xep_0199"].ping(jid=args.domain, timeout=10)  # the server has it
        cs = "<%s xmlns='http://jabber.org/protocol/chatstates'/>"
        b.xmpp.send_raw(chat(full, "cs1", cs % "composing"))
        b.xmpp.send_raw(chat(full, "cs2", cs % "paused"))
        b.xmpp.send_raw(chat(full, "m10", "<body>m10</body>"))
        await until("m10", lambda: "m10" in a.ids, deadline)
        if a.ids[len(want):] != ["cs2", "m10"]:
            raise Failure("while inactive, got %s, want cs2 then m10" % a.ids[len(want):])
        a.xmpp["xep_0352"].send_active()
        step("csi", ids=a.ids[len(want):])
    finally:
        for c in (a, b):
            await c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--a", required=True)
    p.add_argument("--a-password", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--b-password", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    result = {"ok": False, "slixmpp": slixmpp.__version__, "steps": []}
    try:
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout))
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure is reported in the JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result, indent=1))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
