#!/usr/bin/python3
"""Two slixmpp clients use a group at groups.DOMAIN with xep_0045.

interop/muc_test.go runs it. A makes a room by joining, configures it
from the owner form, B joins; they talk, B changes nick, A gives B
membership, reads the member list, kicks B, and destroys the room. It
prints one JSON object {"ok": true, "steps": [...]}, or "ok": false with
"error"; exit 0 when every step passed.
"""

import argparse
import asyncio
import json
import sys
import time

import slixmpp

from slixmpp_chat import Client, Failure, until


async def run(args, result):
    room = "interop@groups." + args.domain
    a_bare = "%s@%s" % (args.a, args.domain)
    b_bare = "%s@%s" % (args.b, args.domain)
    deadline = time.monotonic() + args.timeout - 5

    def step(name, **info):
        result["steps"].append(dict(step=name, **info))

    a = Client("A", a_bare + "/muc", args.a_password, "SCRAM-SHA-256")
    b = Client("B", b_bare + "/muc", args.b_password, "SCRAM-SHA-256")
    for c in (a, b):
        c.xmpp.register_plugin("xep_0004")
        c.xmpp.register_plugin("xep_0045")
    try:
        await asyncio.gather(a.login(args.host, args.port), b.login(args.host, args.port))
        step("login")

        info = await a.xmpp["xep_0030"].get_items(jid=args.domain, timeout=10)
        items = [i[0] for i in info["disco_items"]["items"]]
        if "groups." + args.domain not in items:
            raise Failure("groups service not among the server's items: %r" % items)
        step("disco items", items=items)

        pres, _subject, _occupants, _history = await a.xmpp["xep_0045"].join_muc_wait(room, "alice", maxstanzas=0, timeout=10)
        codes = sorted(int(c) for c in pres["muc"]["status_codes"])
        if 110 not in codes or 201 not in codes:
            raise Failure("self-presence of a new room has codes %r, want 110 and 201" % codes)
        step("room made by joining", affiliation=pres["muc"]["affiliation"], role=pres["muc"]["role"], codes=codes)
        if pres["muc"]["affiliation"] != "owner":
            raise Failure("creator is %s, want owner" % pres["muc"]["affiliation"])

        form = await a.xmpp["xep_0045"].get_room_config(room, timeout=10)
        fields = form.get_fields()
        for f in ("muc#roomconfig_roomname", "muc#roomconfig_persistentroom", "muc#roomconfig_membersonly", "muc#roomconfig_mam"):
            if f not in fields:
                raise Failure("config form lacks %s" % f)
        submit = a.xmpp["xep_0004"].make_form(ftype="submit")
        submit.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig")
        submit.add_field(var="muc#roomconfig_roomname", value="Interop")
        submit.add_field(var="muc#roomconfig_persistentroom", value=True)
        await a.xmpp["xep_0045"].set_room_config(room, submit, timeout=10)
        step("configured", fields=len(fields))

        await b.xmpp["xep_0045"].join_muc_wait(room, "bob", maxstanzas=0, timeout=10)
        await until("A sees bob", lambda: "bob" in a.xmpp["xep_0045"].get_roster(room), deadline)
        step("B joined", roster=sorted(a.xmpp["xep_0045"].get_roster(room)))

        b.xmpp.send_message(mto=room, mbody="hello group", mtype="groupchat")
        await until("A gets B's message", lambda: any(m[0] == room + "/bob" and m[3] == "hello group" for m in a.messages), deadline)
        await until("B gets its echo", lambda: any(m[0] == room + "/bob" and m[3] == "hello group" for m in b.messages), deadline)
        step("groupchat")

        b.xmpp.send_presence(pto=room + "/robert")
        await until("A sees the new nick", lambda: "robert" in a.xmpp["xep_0045"].get_roster(room) and "bob" not in a.xmpp["xep_0045"].get_roster(room), deadline)
        step("nick change")

        await a.xmpp["xep_0045"].set_affiliation(room, "member", jid=b_bare, timeout=10)
        members = await a.xmpp["xep_0045"].get_affiliation_list(room, "member", timeout=10)
        if b_bare not in [str(j) for j in members]:
            raise Failure("member list %r lacks B" % members)
        step("member list", members=[str(j) for j in members])

        await a.xmpp["xep_0045"].set_role(room, "robert", "none", reason="interop", timeout=10)
        await until("B is out", lambda: room not in [str(r) for r in b.xmpp["xep_0045"].get_joined_rooms()] or
                    "robert" not in a.xmpp["xep_0045"].get_roster(room), deadline)
        step("kick")

        await a.xmpp["xep_0045"].destroy(room, reason="done", timeout=10)
        step("destroy")
    finally:
        await asyncio.gather(a.close(), b.close())


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
