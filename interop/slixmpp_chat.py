#!/usr/bin/python3
"""Two slixmpp clients chat through a Dialtone server.

Run with Debian's /usr/bin/python3 and python3-slixmpp. The Go test
interop/slixmpp_test.go starts the server, makes the two accounts with
xmppctl and runs this script; it can also be run by hand against
`make run`:

  /usr/bin/python3 interop/slixmpp_chat.py --port 5222 \
      --a +821012345678 --a-password PW1 --b +821098765432 --b-password PW2 \
      --b-national 010-9876-5432

What it checks, in order (each is a "step" of the JSON it prints):
  1. a login with a wrong password fails (SASL failure, no session);
  2. A logs in over STARTTLS with SCRAM-SHA-256, B with SCRAM-SHA-1 (the
     self-signed certificate is accepted, as a user would accept it);
  3. A adds B to its roster and subscribes; B's client accepts and
     subscribes back; both rosters reach subscription "both";
  4. each sees the other's available presence;
  5. A -> B and B -> A chat messages arrive, from and to canonical JIDs;
  6. A writes to B's national form (e.g. 010-9876-5432@localhost) and B
     gets it from A's canonical JID, addressed to B's canonical JID;
  7. with --direct-tls-port, B logs in once more over direct TLS (XEP-0368).

It prints one JSON object on stdout and exits 0 when every step passed,
1 otherwise (2 for bad arguments). Everything is bounded by --timeout.
"""

import argparse
import asyncio
import hashlib
import json
import logging
import ssl
import sys
import time

import slixmpp


class Failure(Exception):
    """A step did not pass."""


def accept_any_certificate(client):
    # A user of a fresh server accepts its self-signed certificate once; the
    # script does the same, and reports the fingerprint it accepted.
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE


class Client:
    """One slixmpp session and what it observed."""

    def __init__(self, name, jid, password, mech):
        self.name = name
        self.xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mech)
        self.xmpp.register_plugin("xep_0030")
        self.xmpp.register_plugin("xep_0199")
        accept_any_certificate(self.xmpp)
        self.xmpp.whitespace_keepalive = False
        self.mechanism = None
        self.auth_failed = False  # the server answered SASL with a failure
        self.auth_condition = None
        self.cert_sha256 = None
        self.session = asyncio.get_event_loop().create_future()
        self.messages = []  # (from, to, type, body)
        self.available = set()  # bare JIDs seen available
        self.disconnected = asyncio.Event()
        x = self.xmpp
        x.add_event_handler("session_start", self._session_start)
        x.add_event_handler("auth_success", self._auth_success)
        x.add_event_handler("failed_auth", self._auth_failure)
        x.add_event_handler("no_auth", lambda _: self._fail("no_auth"))
        x.add_event_handler("connection_failed", lambda e: self._fail("connection_failed: %s" % e))
        x.add_event_handler("ssl_invalid_chain", lambda e: self._fail("ssl_invalid_chain: %s" % e))
        x.add_event_handler("stream_error", lambda e: self._fail("stream_error: %s" % e["condition"]))
        x.add_event_handler("disconnected", self._disconnected)
        x.add_event_handler("ssl_cert", self._ssl_cert)
        x.add_event_handler("message", self._message)
        x.add_event_handler("message_error", self._message)
        x.add_event_handler("presence_available", self._available)

    def _auth_success(self, _):
        mech = self.xmpp["feature_mechanisms"].mech
        self.mechanism = mech.name if mech else None

    def _auth_failure(self, stanza):
        self.auth_failed = True
        self.auth_condition = stanza["condition"]
        self._fail("SASL failure %s" % stanza["condition"])

    def _ssl_cert(self, pem):
        self.cert_sha256 = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    async def _session_start(self, _):
        try:
            await self.xmpp.get_roster(timeout=10)
            self.xmpp.send_presence()
        except Exception as e:  # noqa: BLE001 - reported as the step's failure
            self._fail("roster after login: %r" % e)
            return
        if not self.session.done():
            self.session.set_result(True)

    def _fail(self, why):
        if not self.session.done():
            self.session.set_exception(Failure("%s: %s" % (self.name, why)))

    def _disconnected(self, _):
        self.disconnected.set()
        self._fail("disconnected before the session started")

    def _message(self, msg):
        self.messages.append((str(msg["from"]), str(msg["to"]), msg["type"], msg["body"]))

    def _available(self, pres):
        self.available.add(pres["from"].bare)

    def connect(self, host, port, direct_tls=False):
        if direct_tls:
            self.xmpp.connect((host, port), use_ssl=True, force_starttls=False)
        else:
            self.xmpp.connect((host, port), use_ssl=False, force_starttls=True)

    async def login(self, host, port, direct_tls=False, timeout=20):
        self.connect(host, port, direct_tls)
        await asyncio.wait_for(self.session, timeout)

    async def close(self):
        if not self.disconnected.is_set():
            self.xmpp.disconnect()
            try:
                await asyncio.wait_for(self.disconnected.wait(), 5)
            except asyncio.TimeoutError:
                pass

    def roster_subscription(self, bare):
        roster = self.xmpp.client_roster
        if bare not in roster:
            return None
        return roster[bare]["subscription"]


async def until(what, cond, deadline):
    """Waits until cond() is true, or fails the step at the deadline."""
    while not cond():
        if time.monotonic() > deadline:
            raise Failure("timed out waiting for " + what)
        await asyncio.sleep(0.05)


async def run(args, result):
    a_bare = "%s@%s" % (args.a, args.domain)
    b_bare = "%s@%s" % (args.b, args.domain)
    deadline = time.monotonic() + args.timeout - 5
    clients = []

    def step(name, **info):
        result["steps"].append(dict(step=name, **info))

    try:
        # 1. A wrong password must not log in.
        wrong = Client("wrong", a_bare + "/wrong", args.a_password + "x", "SCRAM-SHA-256")
        clients.append(wrong)
        try:
            await wrong.login(args.host, args.port, timeout=20)
        except Failure as e:
            if not wrong.auth_failed:
                raise Failure("wrong password: no SASL failure: %s" % e)
            if wrong.auth_condition != "not-authorized":
                raise Failure("wrong password: SASL failure %s, want not-authorized" % wrong.auth_condition)
            step("wrong password refused", detail=str(e))
        except asyncio.TimeoutError:
            raise Failure("wrong password: neither refused nor accepted within 20 s")
        else:
            raise Failure("wrong password: logged in")
        await wrong.close()

        # 2. Both log in over STARTTLS, each with one SCRAM mechanism.
        a = Client("A", a_bare + "/interop", args.a_password, "SCRAM-SHA-256")
        b = Client("B", b_bare + "/interop", args.b_password, "SCRAM-SHA-1")
        clients += [a, b]
        await asyncio.gather(a.login(args.host, args.port), b.login(args.host, args.port))
        for c, want in ((a, "SCRAM-SHA-256"), (b, "SCRAM-SHA-1")):
            if c.mechanism != want:
                raise Failure("%s authenticated with %s, want %s" % (c.name, c.mechanism, want))
        for c, bare in ((a, a_bare), (b, b_bare)):
            if c.xmpp.boundjid.bare != bare:
                raise Failure("%s bound %s, want %s" % (c.name, c.xmpp.boundjid, bare))
        result["cert_sha256"] = a.cert_sha256
        step("login", a=str(a.xmpp.boundjid), a_mechanism=a.mechanism,
             b=str(b.xmpp.boundjid), b_mechanism=b.mechanism)

        # 3. A adds B and subscribes; B's client accepts and subscribes back
        # (slixmpp's auto_authorize and auto_subscribe, on by default).
        await a.xmpp.update_roster(b_bare, name="B", timeout=10)
        a.xmpp.send_presence_subscription(pto=b_bare, ptype="subscribe")
        await until("subscription both on both rosters",
                    lambda: a.roster_subscription(b_bare) == "both" and b.roster_subscription(a_bare) == "both",
                    deadline)
        step("subscribed", a_has_b=a.roster_subscription(b_bare), b_has_a=b.roster_subscription(a_bare))

        # 4. Presence both ways.
        await until("presence both ways",
                    lambda: b_bare in a.available and a_bare in b.available, deadline)
        step("presence seen")

        # 5. Messages both ways.
        async def deliver(sender, receiver, to, body, want_from, want_to):
            sender.xmpp.send_message(mto=to, mbody=body, mtype="chat")
            got = []

            def arrived():
                got[:] = [m for m in receiver.messages if m[3] == body]
                return bool(got)

            await until("%r at %s" % (body, receiver.name), arrived, deadline)
            frm, to_attr, mtype, _ = got[0]
            if frm.split("/")[0] != want_from or to_attr.split("/")[0] != want_to or mtype != "chat":
                raise Failure("%r arrived from %s to %s type %s; want from %s to %s" %
                              (body, frm, to_attr, mtype, want_from, want_to))
            errors = [m for m in sender.messages if m[2] == "error"]
            if errors:
                raise Failure("%s got an error message back: %r" % (sender.name, errors))
            return frm, to_attr

        frm, to = await deliver(a, b, b_bare, "hello B, this is A", a_bare, b_bare)
        step("message A to B", frm=frm, to=to)
        frm, to = await deliver(b, a, a_bare, "hello A, B here", b_bare, a_bare)
        step("message B to A", frm=frm, to=to)

        # 6. The national form of B's number reaches B under canonical JIDs.
        if args.b_national:
            national = "%s@%s" % (args.b_national, args.domain)
            frm, to = await deliver(a, b, national, "to your national form", a_bare, b_bare)
            step("message to national form", sent_to=national, frm=frm, to=to)

        # 7. Direct TLS.
        if args.direct_tls_port:
            d = Client("B-direct", b_bare + "/direct", args.b_password, "SCRAM-SHA-256")
            clients.append(d)
            await d.login(args.host, args.direct_tls_port, direct_tls=True)
            step("direct TLS login", jid=str(d.xmpp.boundjid), mechanism=d.mechanism)
    finally:
        for c in clients:
            await c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="STARTTLS client port")
    p.add_argument("--direct-tls-port", type=int, default=0, help="direct TLS port; 0 skips that step")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--a", required=True, help="A's canonical number, e.g. +821012345678")
    p.add_argument("--a-password", required=True)
    p.add_argument("--b", required=True, help="B's canonical number")
    p.add_argument("--b-password", required=True)
    p.add_argument("--b-national", default="", help="B's number in national form, e.g. 010-9876-5432")
    p.add_argument("--timeout", type=float, default=60, help="seconds for everything")
    p.add_argument("--debug", action="store_true", help="slixmpp debug log on stderr")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    result = {"ok": False, "slixmpp": slixmpp.__version__, "steps": []}
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
    # slixmpp leaves filter tasks behind on disconnect; end them quietly.
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    print(json.dumps(result, indent=1))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
