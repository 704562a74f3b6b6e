#!/usr/bin/python3
"""One slixmpp client uploads a file with XEP-0363 (plugin xep_0363).

interop/upload_test.go runs it: the plugin finds the upload service among
the domain's disco items and reads max-file-size from its form (that walk
is done here, see discover), asks for a slot and PUTs the file; then a slot request over the limit must come back
as not-acceptable with <file-too-large/>. Prints one JSON object:
{"ok": true, "get_url": URL, "max_file_size": N, "too_big": CONDITION}.

  /usr/bin/python3 interop/slixmpp_upload.py --port 5222 \\
      --jid +821012345678@localhost --password PW --file data.bin
"""

import argparse
import asyncio
import json
import os
import sys

import slixmpp
from slixmpp.exceptions import IqError

from slixmpp_chat import Client


async def discover(xmpp, up, domain):
    """find_upload_service's walk, done here: slixmpp 1.8.3's
    get_info_from_domain hands coroutines to asyncio.wait, which Python
    3.11 refuses. The same steps: the domain's disco items, the one with
    the feature, max-file-size from its form."""
    items = await xmpp["xep_0030"].get_items(jid=domain, timeout=10)
    for jid, _node, _name in items["disco_items"]["items"]:
        info = await xmpp["xep_0030"].get_info(jid=jid, timeout=10)
        if "urn:xmpp:http:upload:0" not in info["disco_info"]["features"]:
            continue
        up.upload_service = info["from"]
        for form in info["disco_info"].iterables:
            values = form["values"]
            if values.get("FORM_TYPE") == ["urn:xmpp:http:upload:0"]:
                up.max_file_size = int(values["max-file-size"])
        return
    raise RuntimeError("no upload service among the items of " + domain)


async def run(args, result):
    c = Client("upload", args.jid + "/upload", args.password, "SCRAM-SHA-256")
    c.xmpp.register_plugin("xep_0363")
    up = c.xmpp["xep_0363"]
    try:
        await c.login(args.host, args.port)
        await discover(c.xmpp, up, args.jid.split("@")[1])
        result["get_url"] = await up.upload_file(args.file, content_type="application/octet-stream", timeout=20)
        result["service"] = str(up.upload_service)
        result["max_file_size"] = up.max_file_size
        try:
            await up.request_slot(up.upload_service, "big.bin", up.max_file_size + 1, "application/octet-stream", timeout=10)
            result["too_big"] = "accepted"
        except IqError as e:
            err = e.iq["error"]
            result["too_big"] = err["condition"]
            result["too_big_xml"] = str(err)
    finally:
        await c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
    p.add_argument("--jid", required=True, help="the bare JID to log in as")
    p.add_argument("--password", required=True)
    p.add_argument("--file", required=True, help="the file to upload")
    p.add_argument("--timeout", type=float, default=60, help="seconds for everything")
    args = p.parse_args()
    result = {"ok": False, "slixmpp": slixmpp.__version__, "size": os.path.getsize(args.file)}
    try:
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout))
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure is reported in the JSON
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
