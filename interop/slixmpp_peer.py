#!/usr/bin/python3
"""A slixmpp user writes to numbers and waits for their answers.

Run with Debian's /usr/bin/python3 and python3-slixmpp. The Go test
interop/webclient_test.go runs it while the people it writes to read and
answer in the web client (Converse.js in Chromium); by hand, against
`make run`:

  /usr/bin/python3 interop/slixmpp_peer.py --port 5222 \
      --jid +821012345678@localhost --password PW \
      --send +821055550001 "Hello" --expect +821055550001 "Hi back"

It logs in over STARTTLS (the self-signed certificate accepted, as a user
would accept it), sends initial presence, sends each --send NUMBER BODY as
a chat message to NUMBER@DOMAIN, then stays online until a message with
each --expect NUMBER BODY arrived from NUMBER@DOMAIN (any resource).

It prints one JSON object on stdout (what it sent and received) and exits
0 when every expected answer arrived, 1 otherwise (2 for bad arguments).
Everything is bounded by --timeout.
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
    """The user could not do its part."""


async def run(args, result):
    xmpp = slixmpp.ClientXMPP(args.jid + "/peer", args.password)
    xmpp.register_plugin("xep_0030")
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.whitespace_keepalive = False
    session = asyncio.get_event_loop().create_future()
    disconnected = asyncio.Event()

    def fail(why):
        if not session.done():
            session.set_exception(Failure(why))

    async def session_start(_):
        try:
            await xmpp.get_roster(timeout=10)
            xmpp.send_presence()
        except Exception as e:  # noqa: BLE001 - reported as the failure
            fail("roster after login: %r" % e)
            return
        if not session.done():
            session.set_result(True)

    def message(msg):
        if msg["body"]:
            result["received"].append([msg["from"].bare, msg["type"], msg["body"]])

    xmpp.add_event_handler("session_start", session_start)
    # A failed mechanism is not the end: slixmpp tries the next one it
    # can (as it picks SCRAM-*-PLUS with tls-unique, which TLS 1.3 lacks,
    # before plain SCRAM), like a real slixmpp client; running out of
    # mechanisms is "no_auth", or a disconnect.
    xmpp.add_event_handler("failed_auth", lambda s: result.setdefault("sasl_failures", []).append(s["condition"]))
    xmpp.add_event_handler("no_auth", lambda _: fail("SASL: no mechanism left, failures %s" % result.get("sasl_failures")))
    xmpp.add_event_handler("connection_failed", lambda e: fail("connection_failed: %s" % e))
    xmpp.add_event_handler("disconnected", lambda _: (disconnected.set(), fail("disconnected")))
    xmpp.add_event_handler("message", message)
    xmpp.add_event_handler("message_error", message)

    deadline = time.monotonic() + args.timeout
    xmpp.connect((args.host, args.port), use_ssl=False, force_starttls=True)
    try:
        await asyncio.wait_for(session, 20)
        for number, body in args.send:
            to = "%s@%s" % (number, args.domain)
            xmpp.send_message(mto=to, mbody=body, mtype="chat")
            result["sent"].append([to, body])
        want = [["%s@%s" % (n, args.domain), b] for n, b in args.expect]

        def missing():
            got = [[frm, body] for frm, _, body in result["received"]]
            return [w for w in want if w not in got]

        while missing():
            if time.monotonic() > deadline:
                raise Failure("no answer %r within %ss" % (missing(), args.timeout))
            await asyncio.sleep(0.05)
        result["ok"] = True
    finally:
        if not disconnected.is_set():
            xmpp.disconnect()
            try:
                await asyncio.wait_for(disconnected.wait(), 5)
            except asyncio.TimeoutError:
                pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--send", nargs=2, action="append", default=[], metavar=("NUMBER", "BODY"))
    p.add_argument("--expect", nargs=2, action="append", default=[], metavar=("NUMBER", "BODY"))
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr)
    result = {"ok": False, "slixmpp": slixmpp.__version__, "sent": [], "received": [], "error": None}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(run(args, result), args.timeout + 10))
    except Failure as e:
        result["error"] = str(e)
    except asyncio.TimeoutError:
        result["error"] = "timed out after %g s" % args.timeout
    except Exception as e:  # noqa: BLE001 - any crash is a failed run, reported as such
        result["error"] = "%s: %s" % (type(e).__name__, e)
    # slixmpp leaves filter tasks behind on disconnect; end them quietly.
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    print(json.dumps(result))
    return 0 if result["ok"] else 1

if __name__ == "__main__":
    sys.exit(main())
