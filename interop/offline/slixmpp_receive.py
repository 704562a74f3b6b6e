#!/usr/bin/python3
"""slixmpp logs in as the receivers of stored (offline) messages.

Run with Debian's /usr/bin/python3 and python3-slixmpp. The Go test
interop/offline/slixmpp_test.go starts the server, has messages stored for
the accounts and runs this script; by hand, against `make run`:

  /usr/bin/python3 interop/offline/slixmpp_receive.py --port 5222 \
      --account +821033334444 PASSWORD 5

For each --account NUMBER PASSWORD EXPECT, in turn: log in over STARTTLS
(the self-signed certificate accepted, as a user would accept it), fetch
the roster, send initial presence, and record every message that arrives
until EXPECT did and then --quiet seconds passed without another (so that
a message that came twice would be seen), then log out. The XEP-0203
<delay/> of each message is recorded twice: its raw attributes and the
stamp as slixmpp's xep_0203 plugin reads it.

It prints one JSON object on stdout, with what each account received, and
exits 0 when every account logged in and received at least EXPECT
messages, 1 otherwise (2 for bad arguments). The Go test judges the
messages. Everything is bounded by --timeout.
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


class Failure(Exception):
    """An account could not do its part."""


class Receiver:
    """One slixmpp session and the messages it received."""

    def __init__(self, jid, password):
        self.xmpp = slixmpp.ClientXMPP(jid, password)
        for plugin in ("xep_0030", "xep_0199", "xep_0203"):
            self.xmpp.register_plugin(plugin)
        self.xmpp.ssl_context.check_hostname = False
        self.xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        self.xmpp.whitespace_keepalive = False
        self.session = asyncio.get_event_loop().create_future()
        self.messages = []
        self.last_message = time.monotonic()
        self.disconnected = asyncio.Event()
        x = self.xmpp
        x.add_event_handler("session_start", self._session_start)
        # A failed mechanism is not the end: slixmpp tries SCRAM-*-PLUS with
        # tls-unique first (TLS 1.3 has none, so the server refuses it) and
        # then the next mechanism, as any slixmpp client does; running out
        # of mechanisms is no_auth.
        self.sasl_failures = []
        x.add_event_handler("failed_auth", lambda s: self.sasl_failures.append(s["condition"]))
        x.add_event_handler("no_auth", lambda _: self._fail("no_auth after SASL failures %s" % self.sasl_failures))
        x.add_event_handler("connection_failed", lambda e: self._fail("connection_failed: %s" % e))
        x.add_event_handler("stream_error", lambda e: self._fail("stream_error: %s" % e["condition"]))
        x.add_event_handler("disconnected", self._disconnected)
        # Synchronous handlers run in the order the stanzas arrived.
        x.add_event_handler("message", self._message)
        x.add_event_handler("message_error", self._message)

    async def _session_start(self, _):
        try:
            await self.xmpp.get_roster(timeout=10)
            self.xmpp.send_presence()
        except Exception as e:  # noqa: BLE001 - reported as the account's failure
            self._fail("roster after login: %r" % e)
            return
        if not self.session.done():
            self.session.set_result(True)

    def _fail(self, why):
        if not self.session.done():
            self.session.set_exception(Failure(why))

    def _disconnected(self, _):
        self.disconnected.set()
        self._fail("disconnected before the session started")

    def _message(self, msg):
        self.last_message = time.monotonic()
        rec = {
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "type": msg["type"],
            "body": msg["body"],
            "delay": None,
        }
        el = msg.xml.find(NS_DELAY)
        if el is not None:
            stamp = msg["delay"]["stamp"]
            rec["delay"] = {
                "from": el.get("from"),
                "stamp": el.get("stamp"),
                # As slixmpp's xep_0203 plugin reads it.
                "slixmpp_from": str(msg["delay"]["from"]),
                "slixmpp_stamp": stamp.isoformat() if stamp else None,
            }
        self.messages.append(rec)

    async def close(self):
        if not self.disconnected.is_set():
            self.xmpp.disconnect()
            try:
                await asyncio.wait_for(self.disconnected.wait(), 5)
            except asyncio.TimeoutError:
                pass


async def receive(args, number, password, expect, deadline, out):
    bare = "%s@%s" % (number, args.domain)
    r = Receiver(bare + "/slixmpp", password)
    out["jid"] = bare
    out["messages"] = r.messages
    try:
        r.xmpp.connect((args.host, args.port), use_ssl=False, force_starttls=True)
        await asyncio.wait_for(r.session, max(1, deadline - time.monotonic()))
        out["bound"] = str(r.xmpp.boundjid)
        while True:
            now = time.monotonic()
            if len(r.messages) >= expect and now - r.last_message >= args.quiet:
                break
            if now > deadline:
                raise Failure("%s: %d of %d messages before the deadline" % (bare, len(r.messages), expect))
            await asyncio.sleep(0.05)
    except asyncio.TimeoutError:
        raise Failure("%s: no session before the deadline" % bare)
    except Failure as e:
        raise Failure("%s: %s" % (bare, e))
    finally:
        await r.close()


async def run(args, result):
    deadline = time.monotonic() + args.timeout - 3
    for number, password, expect in args.account:
        out = {}
        result["accounts"].append(out)
        await receive(args, number, password, int(expect), deadline, out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--account", nargs=3, action="append", required=True,
                   metavar=("NUMBER", "PASSWORD", "EXPECT"), help="log in as NUMBER, expect EXPECT messages")
    p.add_argument("--quiet", type=float, default=1.0, help="seconds without a message before logging out")
    p.add_argument("--timeout", type=float, default=60, help="seconds for everything")
    p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    result = {"ok": False, "slixmpp": slixmpp.__version__, "accounts": []}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(run(args, result), args.timeout))
        result["ok"] = True
    except Failure as e:
        result["error"] = str(e)
    except asyncio.TimeoutError:
        result["error"] = "timed out after %g s" % args.timeout
    except Exception as e:  # noqa: BLE001 - any crash is a failed run, reported as such
        result["error"] = "%s: %s" % (type(e).__name__, e)
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    print(json.dumps(result, indent=1, ensure_ascii=False))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
