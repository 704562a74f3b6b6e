#!/usr/bin/python3
"""Two slixmpp clients use PEP (plugins xep_0060, xep_0163, xep_0084, xep_0172,
xep_0054, xep_0153).

interop/pep_test.go runs it. B logs in with caps that ask for avatar and
nick notifications (xep_0115 + xep_0163), A befriends B, then publishes an
avatar (XEP-0084 data and metadata) and a nick (XEP-0172). B must get both
notifications, fetch the avatar data by the metadata's id and find the
same bytes, find the same bytes as the PHOTO of A's vCard (xep_0054: the
server's XEP-0398 conversion) and the avatar's hash in A's next presence
(xep_0153: stamped by the server, A's client does not add it), read the
nick with xep_0060 get_items, and get item-not-found for a node that does
not exist. Prints one JSON object with "ok".

  /usr/bin/python3 interop/slixmpp_pep.py --port 5222 \\
      --a +821012345678@localhost --a-password PW \\
      --b +821098765432@localhost --b-password PW2
"""

import argparse
import asyncio
import hashlib
import json
import sys

import slixmpp
from slixmpp.exceptions import IqError

from slixmpp_chat import Client

AVATAR = bytes(range(256)) * 8


def pep_client(name, jid, password, *extra):
    c = Client(name, jid, password, "SCRAM-SHA-256")
    for p in ("xep_0115", "xep_0060", "xep_0163", "xep_0084", "xep_0172") + extra:
        c.xmpp.register_plugin(p)
    return c


async def befriended(c, other, timeout=15):
    """Waits until c's roster shows a mutual subscription with other."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if c.roster_subscription(other) == "both":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no mutual subscription with %s: %s" % (other, c.roster_subscription(other)))


async def run(args, result):
    a = pep_client("a", args.a + "/pep", args.a_password)
    b = pep_client("b", args.b + "/pep", args.b_password, "xep_0054", "xep_0153")
    loop = asyncio.get_event_loop()
    got = {"metadata": loop.create_future(), "nick": loop.create_future(), "hash": loop.create_future()}

    def on_metadata(msg):
        if msg["from"].bare == args.a and not got["metadata"].done():
            info = msg["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
            got["metadata"].set_result(info["id"])

    def on_nick(msg):
        if msg["from"].bare == args.a and not got["nick"].done():
            got["nick"].set_result(msg["pubsub_event"]["items"]["item"]["nick"]["nick"])

    def on_presence(pres):
        photo = pres["vcard_temp_update"]["photo"]
        if pres["from"].bare == args.a and photo and not got["hash"].done():
            got["hash"].set_result(photo)

    b.xmpp.add_event_handler("avatar_metadata_publish", on_metadata)
    b.xmpp.add_event_handler("presence_available", on_presence)
    b.xmpp.add_event_handler("user_nick_publish", on_nick)
    try:
        await b.login(args.host, args.port)
        await a.login(args.host, args.port)
        a.xmpp.send_presence(pto=args.b, ptype="subscribe")
        await befriended(a, args.b)
        await befriended(b, args.a)
        result["steps"].append("befriended")

        avatar_id = hashlib.sha1(AVATAR).hexdigest()
        await a.xmpp["xep_0084"].publish_avatar(AVATAR, timeout=10)
        await a.xmpp["xep_0084"].publish_avatar_metadata(
            items=[{"id": avatar_id, "type": "image/png", "bytes": len(AVATAR)}], timeout=10)
        result["metadata_id"] = await asyncio.wait_for(got["metadata"], 10)
        if result["metadata_id"] != avatar_id:
            raise RuntimeError("metadata id %s, want %s" % (result["metadata_id"], avatar_id))
        iq = await b.xmpp["xep_0084"].retrieve_avatar(args.a, avatar_id, timeout=10)
        data = iq["pubsub"]["items"]["item"]["avatar_data"]["value"]
        if data != AVATAR:
            raise RuntimeError("avatar data: %d bytes, not what was published" % len(data))
        result["steps"].append("avatar")

        iq = await b.xmpp["xep_0054"].get_vcard(args.a, cached=False, timeout=10)
        photo = iq["vcard_temp"]["PHOTO"]
        if photo["BINVAL"] != AVATAR or photo["TYPE"] != "image/png":
            raise RuntimeError("vCard photo %r, %d bytes: not the PEP avatar" % (photo["TYPE"], len(photo["BINVAL"] or b"")))
        result["steps"].append("vcard")
        a.xmpp.send_presence()
        result["presence_hash"] = await asyncio.wait_for(got["hash"], 10)
        if result["presence_hash"] != avatar_id:
            raise RuntimeError("presence hash %s, want %s" % (result["presence_hash"], avatar_id))
        result["steps"].append("presence")

        await a.xmpp["xep_0172"].publish_nick("Alice", timeout=10)
        result["nick"] = await asyncio.wait_for(got["nick"], 10)
        iq = await b.xmpp["xep_0060"].get_items(args.a, "http://jabber.org/protocol/nick", timeout=10)
        result["nick_items"] = [it["payload"].text for it in iq["pubsub"]["items"]["substanzas"]]
        result["steps"].append("nick")

        try:
            await b.xmpp["xep_0060"].get_items(args.a, "urn:example:none", timeout=10)
            result["missing_node"] = "result"
        except IqError as e:
            result["missing_node"] = e.iq["error"]["condition"]
        result["steps"].append("errors")
    finally:
        await a.close()
        await b.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
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
