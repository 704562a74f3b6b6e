#!/usr/bin/python3
"""One slixmpp client logs in and fetches vCards (XEP-0054).

interop/browser_test.go runs it to check that the display name set on the
home page is the vCard FN any XMPP client sees. It reuses slixmpp_chat.py's
client and prints one JSON object: {"ok": true, "fn": {JID: FN, ...}}, or
"ok": false with "error". Exit 0 when every vCard was fetched.

  /usr/bin/python3 interop/slixmpp_vcard.py --port 5222 \\
      --jid +821098765432@localhost --password PW --fetch +821012345678@localhost
"""

import argparse
import asyncio
import json
import sys

import slixmpp

from slixmpp_chat import Client


async def fetch(args, result):
    c = Client("vcard", args.jid + "/vcard", args.password, "SCRAM-SHA-256")
    c.xmpp.register_plugin("xep_0054")
    try:
        await c.login(args.host, args.port)
        for jid in args.fetch:
            iq = await c.xmpp["xep_0054"].get_vcard(jid, timeout=10)
            result["fn"][jid] = iq["vcard_temp"]["FN"]
    finally:
        await c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
    p.add_argument("--jid", required=True, help="the bare JID to log in as")
    p.add_argument("--password", required=True)
    p.add_argument("--fetch", action="append", default=[], help="a bare JID whose vCard to get (repeatable)")
    p.add_argument("--timeout", type=float, default=30, help="seconds for everything")
    args = p.parse_args()
    result = {"ok": False, "slixmpp": slixmpp.__version__, "fn": {}}
    try:
        asyncio.run(asyncio.wait_for(fetch(args, result), args.timeout))
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure is reported in the JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
