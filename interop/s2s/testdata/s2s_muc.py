#!/usr/bin/python3
"""slixmpp users of several federated servers share one group chat room.

Run with Debian's /usr/bin/python3 (python3-slixmpp) by interop/s2s
(muc_test.go). Each --user is "jid|password|host|port|nick"; the first one
makes the room by joining (it must be a user of the room's server) and
configures it, the others join. Every user then sends --count groupchat
messages, and every user must receive every other user's messages from
the room (from room/nick), each exactly once.

With --phonebook HOST, the first user instead asks HOST for a phone book
(im.quicksy.synchronization:0) and reports the error condition it gets.

Prints one JSON object {"ok": true, "steps": [...], "received": {...}};
exit 0 when every step passed.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

from s2s_chat import Failure, until


class User:
    def __init__(self, spec):
        jid, password, host, port, nick = spec.split("|")
        self.nick, self.host, self.port = nick, host, int(port)
        # See s2s_chat.py: no -PLUS with tls-unique.
        x = slixmpp.ClientXMPP(jid + "/muc", password, sasl_mech="SCRAM-SHA-1")
        for p in ("xep_0004", "xep_0030", "xep_0045", "xep_0199"):
            x.register_plugin(p)
        x.ssl_context.check_hostname = False
        x.ssl_context.verify_mode = ssl.CERT_NONE
        x.whitespace_keepalive = False
        self.xmpp = x
        self.session = asyncio.get_event_loop().create_future()
        self.groupchat = []  # (from, body)
        x.add_event_handler("session_start", self._start)
        x.add_event_handler("failed_auth", lambda _: self._fail("authentication failed"))
        x.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))
        x.add_event_handler("groupchat_message", self._groupchat)

    def _fail(self, why):
        if not self.session.done():
            self.session.set_exception(Failure("%s: %s" % (self.nick, why)))

    async def _start(self, _):
        self.xmpp.send_presence()
        if not self.session.done():
            self.session.set_result(True)

    def _groupchat(self, msg):
        if msg["body"]:
            self.groupchat.append((str(msg["from"]), msg["body"]))


async def phonebook(args, users, steps, result):
    u = users[0]
    iq = u.xmpp.make_iq_get(ito=args.phonebook)
    q = ET.Element("{im.quicksy.synchronization:0}phone-book", {"ver": ""})
    ET.SubElement(q, "{im.quicksy.synchronization:0}entry", {"number": args.number})
    iq.append(q)
    try:
        await iq.send(timeout=args.step_timeout)
        raise Failure("the phone book was answered")
    except IqError as e:
        result["condition"] = e.iq["error"]["condition"]
        result["error_from"] = str(e.iq["from"])
        result["names_number"] = args.number in str(e.iq)
    steps.append({"step": "phonebook", "ok": True})


async def groupchat(args, users, steps, result):
    t = args.step_timeout
    room = args.room
    muc = lambda u: u.xmpp["xep_0045"]
    owner = users[0]
    pres, _, _, _ = await muc(owner).join_muc_wait(room, owner.nick, maxstanzas=0, timeout=t)
    codes = sorted(int(c) for c in pres["muc"]["status_codes"])
    if 201 in codes:
        submit = owner.xmpp["xep_0004"].make_form(ftype="submit")
        submit.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig")
        await muc(owner).set_room_config(room, submit, timeout=t)
    steps.append({"step": "room made", "ok": True, "codes": codes})

    for u in users[1:]:
        pres, _, _, _ = await muc(u).join_muc_wait(room, u.nick, maxstanzas=0, timeout=t)
        steps.append({"step": "joined", "ok": True, "nick": u.nick, "role": pres["muc"]["role"]})
    nicks = {u.nick for u in users}
    for u in users:
        await until("%s sees every occupant" % u.nick, lambda u=u: nicks <= set(muc(u).get_roster(room)), t)
    steps.append({"step": "occupants", "ok": True})

    for i in range(args.count):
        for u in users:
            u.xmpp.send_message(mto=room, mbody="%d from %s" % (i, u.nick), mtype="groupchat")
    want = {u.nick: {"%d from %s" % (i, u.nick) for i in range(args.count)} for u in users}

    def complete(u):
        got = {b for f, b in u.groupchat}
        return all(want[v.nick] <= got for v in users)
    for u in users:
        await until("%s gets every message" % u.nick, lambda u=u: complete(u), t)
    received = {}
    for u in users:
        per = {}
        for f, b in u.groupchat:
            sender = f.split("/", 1)[1] if "/" in f else ""
            if b in want.get(sender, ()):
                per[sender] = per.get(sender, 0) + 1
        received[u.nick] = per
    result["received"] = received
    steps.append({"step": "messages", "ok": True})
    for u in users[1:]:
        muc(u).leave_muc(room, u.nick)
    muc(owner).leave_muc(room, owner.nick)


async def run(args, steps, result):
    users = [User(s) for s in args.user]
    for u in users:
        u.xmpp.connect(address=(u.host, u.port), force_starttls=True, disable_starttls=False)
    try:
        for u in users:
            await asyncio.wait_for(u.session, args.step_timeout)
        steps.append({"step": "login", "ok": True})
        if args.phonebook:
            await phonebook(args, users, steps, result)
        else:
            await groupchat(args, users, steps, result)
    finally:
        for u in users:
            u.xmpp.disconnect()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--user", action="append", required=True)
    p.add_argument("--room")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--phonebook")
    p.add_argument("--number", default="+821000000000")
    p.add_argument("--step-timeout", type=float, default=20)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)
    steps = []
    result = {"ok": False, "steps": steps, "slixmpp": slixmpp.__version__}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run(args, steps, result))
        result["ok"] = True
    except Exception as e:  # report every failure as JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
