#!/bin/bash
# bench-peers: issue 15's comparison of Dialtone with Debian's Prosody 0.12
# and ejabberd 23.01 on this machine, all on loopback, configured alike
# (the same self-signed ECDSA P-256 certificate for localhost, STARTTLS
# required (TLS 1.3 with X25519, what the load tool offers each: TLS_GROUPS), SCRAM-SHA-1
# with stored keys, offline storage on, no rate limits), each restarted
# before every run of every phase. xmppload's phases: login, route (as fast
# as possible), rate (route at 1,000 msgs/s: latency), idle (RSS per
# session) and, where xmppload has that scenario, offline.
# Prints the table of medians of RUNS runs with their spread (min-max).
#
#   make bench-peers                  # or: scripts/bench-peers.sh
#   RUNS=1 LOGINS=200 IDLE=500 PAIRS=50 SERVERS="dialtone prosody" scripts/bench-peers.sh
#
# Bounded: each server start waits at most 60 s, each xmppload run is capped
# by xmppload itself (15 min) and by timeout(1), the whole script by
# BENCH_TIMEOUT seconds. It stops only what it started, by PID. Not part of
# make test. Needs root (ejabberd runs as its own user) and the Debian
# packages prosody, ejabberd, openssl, python3.
set -euo pipefail

RUNS=${RUNS:-3}
LOGINS=${LOGINS:-2000}        # login phase: full logins, 50 at a time
IDLE=${IDLE:-5000}            # idle phase: sessions held
PAIRS=${PAIRS:-500}           # route phase: pairs sending as fast as they may
ROUTE_TIME=${ROUTE_TIME:-10s}
IDLE_TIME=${IDLE_TIME:-20s}
OFFLINE=${OFFLINE:-1000}      # offline phase: messages to an offline account
SERVERS=${SERVERS:-"prosody ejabberd dialtone"}
# The TLS 1.3 key exchange the load tool offers: X25519 alone, the one
# Debian's Prosody and ejabberd (OpenSSL 3.0) do. With Go's default client
# Dialtone (Go's TLS) picks X25519MLKEM768, a costlier handshake (about a
# tenth of its login CPU) that the others never do. TLS_GROUPS= for Go's
# default.
TLS_GROUPS=${TLS_GROUPS-x25519}
# PHASES: a subset of "login route rate idle offline"
BENCH_TIMEOUT=${BENCH_TIMEOUT:-7200}
BIN=${BIN:-bin}
# Every server's accept queue: Go's listen(2) takes net.core.somaxconn;
# ejabberd's default is 5 and Prosody's 128. With ejabberd's 5, 50 logins
# dialling at once overflowed it (TcpExtListenOverflows) and the dropped
# SYNs came back 1 and 3 s later: 69 logins/s, p99 4.4 s.
BACKLOG=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)

here=$(cd "$(dirname "$0")/.." && pwd)
for b in xmppd xmppctl xmppload; do
	[ -x "$BIN/$b" ] || { echo "bench-peers: $BIN/$b missing (make build, go build -o $BIN/xmppload ./cmd/xmppload)" >&2; exit 2; }
done
BIN=$(cd "$BIN" && pwd)
work=$(mktemp -d /tmp/bench-peers.XXXXXX)
chmod 755 "$work"
started=()   # PIDs this script started
results=$work/results.jsonl
end_at=$(( $(date +%s) + BENCH_TIMEOUT ))

now_us() { echo "${EPOCHREALTIME/./}"; }
t0=$(now_us)
restart_us=0  # time spent starting and stopping servers

cleanup() {
	local rc=$?
	echo "bench-peers: ran $(( ($(now_us) - t0) / 1000000 )) s, $(( restart_us / 1000000 )) s of it starting and stopping servers" >&2
	# Out of time or interrupted: the table of what was measured.
	if [ "$rc" != 0 ] && [ -s "${results:-}" ]; then
		python3 "$here/scripts/bench-peers-table.py" "$results" $SERVERS || true
	fi
	for pid in "${started[@]}"; do
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${started[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$pid" 2>/dev/null || true
	done
	if [ -n "${KEEP:-}" ] || [ "$rc" != 0 ]; then
		echo "bench-peers: logs and results kept in $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
need=$(( IDLE > LOGINS ? IDLE : LOGINS )); need=$(( need > 2*PAIRS ? need : 2*PAIRS ))

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port pid what
	for _ in $(seq 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		kill -0 "$2" 2>/dev/null || { echo "bench-peers: $3 exited" >&2; return 1; }
		sleep 0.1
	done
	echo "bench-peers: $3 not listening on $1 after 60 s" >&2; return 1
}

stop() { # pid
	local pid=$1
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${started[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	started=("${keep[@]+"${keep[@]}"}")
}

# One certificate for all: ECDSA P-256, localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem" "$work/cert.pem"

# ---- Dialtone: accounts made once on a template data dir, copied per run.
dt_port=
dt_env() {
	export XMPPD_DATA_DIR=$1 XMPPD_C2S_ADDR=127.0.0.1:$dt_port XMPPD_C2S_DIRECT_TLS_ADDR= \
		XMPPD_HTTP_ADDR=127.0.0.1:$(free_port) XMPPD_S2S_ADDR= XMPPD_LOGIN_FAILURES=1000000 \
		XMPPD_C2S_RATE=0 XMPPD_LOG_LEVEL=warn XMPPD_TLS_CERT_FILE=$work/cert.pem XMPPD_TLS_KEY_FILE=$work/key.pem
}
dt_start() { # dir
	dt_port=$(free_port) # fresh: a port free at the start may be taken since
	dt_env "$1"
	setsid "$BIN/xmppd" 2>>"$1/xmppd.log" & pid=$!; started+=("$pid")
	wait_port "$dt_port" "$pid" xmppd || { tail -3 "$1/xmppd.log" >&2; return 1; }
	for _ in $(seq 100); do [ -S "$1/admin.sock" ] && break; sleep 0.1; done
}
setup_dialtone() {
	mkdir -p "$work/dialtone.tmpl"
	echo "bench-peers: importing $need Dialtone accounts" >&2
	python3 -c "
for i in range($need): print('+8210%08d' % (55000000 + i))" >"$work/dialtone.numbers"
	# Batched (1,000 a transaction, keys derived on every core).
	XMPPD_DATA_DIR=$work/dialtone.tmpl timeout 1800 "$BIN/xmppctl" account import "$work/dialtone.numbers" --print 2>/dev/null |
		awk '{print $1 "@localhost", $2}' >"$work/dialtone.accounts"
	[ "$(wc -l <"$work/dialtone.accounts")" = "$need" ] || { echo "bench-peers: the Dialtone import made $(wc -l <"$work/dialtone.accounts") accounts, not $need" >&2; return 1; }
	# The fill logins on the template itself: every run then starts with
	# the accounts active, as the other servers' accounts are.
	dt_start "$work/dialtone.tmpl"
	port=$dt_port accounts=$work/dialtone.accounts
	load dialtone fill >/dev/null
	stop "$pid"
	rm -f "$work/dialtone.tmpl/admin.sock"
}
start_dialtone() {
	rm -rf "$work/dialtone.run"; cp -a "$work/dialtone.tmpl" "$work/dialtone.run"
	dt_start "$work/dialtone.run"
	port=$dt_port accounts=$work/dialtone.accounts
}

# ---- Prosody: accounts written as internal_hashed files (SCRAM-SHA-1 keys).
pr_port=
prosody_config() {
	local d=$work/prosody
	pr_port=$(free_port)
	cat >"$d/prosody.cfg.lua" <<-EOF
	run_as_root = true
	daemonize = false
	pidfile = "$d/prosody.pid"
	data_path = "$d/data"
	log = { warn = "$d/prosody.log" }
	interfaces = { "127.0.0.1" }
	c2s_ports = { $pr_port }
	s2s_ports = { }
	c2s_direct_tls_ports = { }
	http_ports = { }
	https_ports = { }
	network_settings = { tcp_backlog = $BACKLOG }
	modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "offline"; "posix" }
	modules_disabled = { "c2s_direct_tls"; "s2s" }
	authentication = "internal_hashed"
	storage = "internal"
	c2s_require_encryption = true
	ssl = { certificate = "$work/cert.pem"; key = "$work/key.pem"; protocol = "tlsv1_2+" }
	VirtualHost "localhost"
	EOF
}
setup_prosody() {
	local d=$work/prosody
	mkdir -p "$d/data/localhost/accounts"
	python3 - "$d/data/localhost/accounts" "$need" >"$work/prosody.accounts" <<-'EOF'
	import hashlib, hmac, os, sys
	out, n = sys.argv[1], int(sys.argv[2])
	for i in range(n):
	    user, pw = "u%06d" % i, "pw-%06d-x" % i
	    salt, it = os.urandom(12).hex(), 4096
	    salted = hashlib.pbkdf2_hmac("sha1", pw.encode(), salt.encode(), it)
	    stored = hashlib.sha1(hmac.new(salted, b"Client Key", "sha1").digest()).hexdigest()
	    server = hmac.new(salted, b"Server Key", "sha1").hexdigest()
	    with open(os.path.join(out, user + ".dat"), "w") as f:
	        f.write('return {\n\t["iteration_count"] = %d;\n\t["salt"] = "%s";\n\t["server_key"] = "%s";\n\t["stored_key"] = "%s";\n};\n' % (it, salt, server, stored))
	    print(user + "@localhost", pw)
	EOF
}
start_prosody() {
	prosody_config
	setsid prosody --config "$work/prosody/prosody.cfg.lua" -F >>"$work/prosody/stdout.log" 2>&1 & pid=$!; started+=("$pid")
	wait_port "$pr_port" "$pid" prosody || { tail -3 "$work/prosody/prosody.log" >&2; return 1; }
	port=$pr_port accounts=$work/prosody.accounts
}

# ---- ejabberd: accounts registered through mod_http_api (loopback only).
ej_port= ej_api=
ej_node=bench-peers-$$@localhost
ej_args=()
ejabberd_config() {
	local d=$work/ejabberd
	ej_port=$(free_port) ej_api=$(free_port)
	cat >"$d/ejabberd.yml" <<-EOF
	hosts: [localhost]
	loglevel: warning
	certfiles: ["$work/cert.pem", "$work/key.pem"]
	listen:
	  - {port: $ej_port, ip: "127.0.0.1", module: ejabberd_c2s, starttls_required: true, max_stanza_size: 262144, backlog: $BACKLOG}
	  - {port: $ej_api, ip: "127.0.0.1", module: ejabberd_http, request_handlers: {/api: mod_http_api}}
	auth_method: internal
	auth_password_format: scram
	auth_scram_hash: sha
	acl:
	  loopback: {ip: ["127.0.0.0/8"]}
	api_permissions:
	  "bench register":
	    who: {acl: loopback}
	    what: ["register"]
	access_rules:
	  local: {allow: all}
	modules:
	  mod_disco: {}
	  mod_ping: {}
	  mod_roster: {}
	  mod_offline: {access_max_user_messages: max_user_offline_messages}
	  mod_http_api: {}
	shaper_rules:
	  max_user_offline_messages: 100000
	EOF
}
setup_ejabberd() {
	local d=$work/ejabberd
	mkdir -p "$d/spool" "$d/logs"
	chown -R ejabberd:ejabberd "$d"
	ej_args=(--config-dir "$d" --spool "$d/spool" --logs "$d/logs" --node "$ej_node")
	start_ejabberd
	echo "bench-peers: registering $need ejabberd accounts" >&2
	python3 - "$ej_api" "$need" >"$work/ejabberd.accounts" <<-'EOF'
	import http.client, json, sys
	port, n = int(sys.argv[1]), int(sys.argv[2])
	c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
	for i in range(n):
	    user, pw = "u%06d" % i, "pw-%06d-x" % i
	    c.request("POST", "/api/register", json.dumps({"user": user, "host": "localhost", "password": pw}), {"Content-Type": "application/json"})
	    r = c.getresponse(); body = r.read()
	    if r.status != 200 and b"already" not in body:
	        sys.exit("register %s: %d %s" % (user, r.status, body))
	    print(user + "@localhost", pw)
	EOF
	stop_ejabberd
}
start_ejabberd() {
	# A new distribution port each time: the last node's may linger.
	local d=$work/ejabberd
	cat >"$d/ejabberdctl.cfg" <<-EOF
	ERLANG_NODE=$ej_node
	ERL_DIST_PORT=$(free_port)
	ERL_MAX_PORTS=65536
	ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}"
	EJABBERD_PID_PATH=$d/ejabberd.pid
	EOF
	ejabberd_config
	chown ejabberd:ejabberd "$d/ejabberdctl.cfg" "$d/ejabberd.yml"
	(cd "$work/ejabberd" && HOME=$work/ejabberd setsid setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
		ejabberdctl "${ej_args[@]}" foreground >>"$work/ejabberd/stdout.log" 2>&1) & pid=$!; started+=("$pid")
	wait_port "$ej_port" "$pid" ejabberd || { tail -3 "$work/ejabberd/logs/error.log" >&2; return 1; }
	port=$ej_port accounts=$work/ejabberd.accounts
}
stop_ejabberd() {
	HOME=$work/ejabberd setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
		timeout 30 ejabberdctl "${ej_args[@]}" stop >/dev/null 2>&1 || true
	stop "$pid"
}

# ---- The runs.
has_offline=false
"$BIN/xmppload" --help 2>&1 | grep -q offline && has_offline=true
phases="login route rate idle"
$has_offline && phases="$phases offline"
phases=${PHASES:-$phases}

load() { # server phase -> one JSON line on stdout
	local s=$1 ph=$2 args=()
	case $ph in
	login) args=(--scenario login --clients "$LOGINS" --concurrency 50) ;;
	fill) args=(--scenario login --clients "$need" --concurrency 50) ;;
	route) args=(--scenario route --clients $(( 2 * PAIRS )) --concurrency 50 --duration "$ROUTE_TIME" --drain 60s) ;;
	rate) args=(--scenario route --clients 100 --concurrency 50 --duration "$ROUTE_TIME" --rate 1000) ;;
	idle) args=(--scenario idle --clients "$IDLE" --concurrency 50 --duration "$IDLE_TIME") ;;
	offline) args=(--scenario offline --clients 2 --messages "$OFFLINE") ;;
	esac
	local left=$(( end_at - $(date +%s) ))
	[ "$left" -gt 60 ] || { echo "bench-peers: out of time (BENCH_TIMEOUT)" >&2; exit 1; }
	# A run that failed in part (lost messages, failed logins) still has
	# its line, which says so.
	{ timeout "$left" "$BIN/xmppload" --addr 127.0.0.1:$port --accounts "$accounts" --mech SCRAM-SHA-1 \
		--scram-cache "$work/$s.scram" --tls-groups "$TLS_GROUPS" --pid "$pid" --label "$s" "${args[@]}" 2>>"$work/xmppload.log" || true; } | tail -1
}

for s in $SERVERS; do
	echo "bench-peers: setting up $s" >&2
	"setup_$s"
	# Fill the client's SCRAM cache for every account (the idle phase logs
	# in more than the login phase), as a client that logged in before has it.
	if [ "$s" != dialtone ]; then
		"start_$s"; load "$s" fill >/dev/null; [ "$s" = ejabberd ] && stop_ejabberd || stop "$pid"
	fi
	echo "bench-peers: $s set up at $(( ($(now_us) - t0) / 1000000 )) s" >&2
done
for ph in $phases; do
	for run in $(seq "$RUNS"); do
		for s in $SERVERS; do
			echo "bench-peers: $ph run $run: $s" >&2
			ts=$(now_us)
			if ! "start_$s"; then
				echo "bench-peers: $s did not start; this run is left out" >&2
				stop "$pid"
				continue
			fi
			restart_us=$(( restart_us + $(now_us) - ts ))
			line=$(load "$s" "$ph") || line=
			ts=$(now_us)
			[ "$s" = ejabberd ] && stop_ejabberd || stop "$pid"
			restart_us=$(( restart_us + $(now_us) - ts ))
			[ -n "$line" ] && printf '{"phase":"%s","run":%d,"result":%s}\n' "$ph" "$run" "$line" >>"$results"
		done
	done
done
python3 "$here/scripts/bench-peers-table.py" "$results" $SERVERS
