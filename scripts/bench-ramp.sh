#!/bin/bash
# bench-ramp: issue 15's 100,000 idle TLS sessions on one xmppd (SQLite,
# the built-in defaults but for loopback addresses), with the ramp table:
# sessions up, logins/s, server RSS, KiB per session, server and client
# CPU, one row a second (every 10,000 sessions printed at the end).
#
#   make bench-ramp                   # or: scripts/bench-ramp.sh
#   N=20000 HOLD=10s scripts/bench-ramp.sh
#
# What it needs: a hard file limit of N+256 (each side holds N sockets:
# the script raises `ulimit -n` for itself, xmppd and xmppload), or root
# with CAP_SYS_RESOURCE to raise it (a container may drop that capability:
# then N is bounded by the hard limit, `ulimit -Hn`); Linux routes all of 127.0.0.0/8 to lo, so the client binds
# its connections round-robin to SRC (127.0.0.2-127.0.0.9: ~28k ephemeral
# ports each, see ip_local_port_range) without any setup. Memory: about
# 4 GiB for the server and 6 GiB for the client at 100,000.
#
# Steps: `xmppctl account import --print` makes N accounts (batched: 1,000
# a transaction, keys derived on every core; a few minutes at 100,000, kept
# in CACHE for the next run), xmppd starts on free ports, xmppload logs
# the N clients in (SCRAM-SHA-1, STARTTLS, bind, presence, ping) CONC at a
# time and holds them HOLD. Bounded: the server start waits 60 s, xmppload
# is capped by itself (15 min) and timeout(1); the script stops only what
# it started, by PID. Not part of make test.
set -euo pipefail

N=${N:-100000}
CONC=${CONC:-100}
HOLD=${HOLD:-20s}
SRC=${SRC:-127.0.0.2-127.0.0.9}
BIN=${BIN:-bin}
CACHE=${CACHE:-/tmp/bench-ramp-cache-$N}

t0=$(date +%s)
here=$(cd "$(dirname "$0")/.." && pwd)
for b in xmppd xmppctl xmppload; do
	[ -x "$BIN/$b" ] || { echo "bench-ramp: $BIN/$b missing (make build, go build -o $BIN/xmppload ./cmd/xmppload)" >&2; exit 2; }
done
BIN=$(cd "$BIN" && pwd)

files=$(( N + 256 ))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$files" ]; then
	ulimit -Hn "$files" 2>/dev/null || { echo "bench-ramp: the hard file limit is $(ulimit -Hn), $files needed for N=$N, and this process may not raise it (root with CAP_SYS_RESOURCE may; or limits.conf, or N=$(( $(ulimit -Hn) - 256 )))" >&2; exit 2; }
fi
ulimit -n "$files"

work=$(mktemp -d /tmp/bench-ramp.XXXXXX)
pid=
cleanup() {
	local rc=$?
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ "$rc" != 0 ] || [ -n "${KEEP:-}" ]; then echo "bench-ramp: logs kept in $work" >&2; else rm -rf "$work"; fi
	echo "bench-ramp: $(( $(date +%s) - t0 )) s in all" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
export XMPPD_DATA_DIR=$work/data XMPPD_C2S_ADDR=127.0.0.1:$port XMPPD_C2S_DIRECT_TLS_ADDR= \
	XMPPD_HTTP_ADDR=127.0.0.1:$(free_port) XMPPD_S2S_ADDR= XMPPD_LOG_LEVEL=warn

# ---- N accounts, imported once into CACHE.
if [ ! -s "$CACHE/accounts" ] || [ ! -d "$CACHE/data" ]; then
	rm -rf "$CACHE"; mkdir -p "$CACHE"
	python3 -c "import sys
for i in range($N): print('+8210%08d' % (50000000 + i))" >"$CACHE/numbers"
	echo "bench-ramp: importing $N numbers" >&2
	ti=$(date +%s)
	XMPPD_DATA_DIR=$CACHE/data timeout 3600 "$BIN/xmppctl" account import "$CACHE/numbers" --print >"$CACHE/imported" 2>"$CACHE/import.log"
	awk '{print $1 "@localhost", $2}' "$CACHE/imported" >"$CACHE/accounts"
	echo "bench-ramp: $(wc -l <"$CACHE/accounts") accounts imported in $(( $(date +%s) - ti )) s" >&2
fi
cp -a "$CACHE/data" "$work/data"
rm -f "$work/data/admin.sock"

# ---- The server.
setsid "$BIN/xmppd" 2>"$work/xmppd.log" & pid=$!
for i in $(seq 600); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { echo "bench-ramp: xmppd exited" >&2; tail -5 "$work/xmppd.log" >&2; exit 1; }
	[ "$i" = 600 ] && { echo "bench-ramp: xmppd not listening after 60 s" >&2; exit 1; }
	sleep 0.1
done
echo "bench-ramp: xmppd pid $pid, file limit $(awk '/Max open files/{print $4}' /proc/$pid/limits), ramping to $N idle sessions from $SRC" >&2

# ---- The ramp. The SCRAM cache in CACHE saves the client its PBKDF2 on a
# second run (a client that logged in before has it).
rc=0
timeout 1200 "$BIN/xmppload" --addr 127.0.0.1:$port --accounts "$CACHE/accounts" --mech SCRAM-SHA-1 \
	--scram-cache "$CACHE/scram" --scenario idle --clients "$N" --concurrency "$CONC" --src "$SRC" \
	--duration "$HOLD" --ramp 1s --pid "$pid" --label dialtone >"$work/result.json" 2>"$work/xmppload.log" || rc=$?
grep -v '^ *[0-9]' "$work/xmppload.log" >&2 || true
python3 - "$work/result.json" <<-'EOF'
	import json, sys
	lines = [l for l in open(sys.argv[1]) if l.strip()]
	if not lines:
	    sys.exit("bench-ramp: no result")
	r = json.loads(lines[-1])
	rows = r.get("ramp") or []
	print("%9s %8s %10s %9s %9s %8s %8s" % ("sessions", "second", "RSS MiB", "KiB/sess", "logins/s", "srv CPU", "cli CPU"))
	step, mark = 10000 if r["clients"] >= 20000 else max(1, r["clients"] // 10), 0
	for i, row in enumerate(rows):
	    last = i == len(rows) - 1
	    if row["sessions"] >= mark + step or last:
	        # logins/s over the last few seconds: one second is noisy.
	        w = rows[max(0, i - 4):i + 1]
	        lps = sum(x.get("logins_per_s", 0) for x in w) / len(w)
	        print("%9d %8.0f %10.1f %9.1f %9.0f %7.0f%% %7.0f%%" % (row["sessions"], row["s"], row.get("rss_kib", 0) / 1024,
	              row.get("kib_per_session", 0), lps, row.get("server_cpu_pct", 0), row.get("client_cpu_pct", 0)))
	        mark = row["sessions"] // step * step
	print("%d of %d logged in (%d failed), %.0f logins/s overall, p50 %.0f ms, p99 %.0f ms" % (r["logins"], r["clients"],
	      r["login_failures"], r.get("logins_per_s", 0), r.get("login_p50_ms", 0), r.get("login_p99_ms", 0)))
	if r.get("server_rss_after_kib"):
	    print("held %s s: server RSS %.0f MiB, %.1f KiB per session (%.1f 2 s after the ramp)" % (r["seconds"],
	          r["server_rss_after_kib"] / 1024, r.get("kib_per_session", 0), r.get("kib_per_session_settled", 0)))
EOF
exit "$rc"
