# Dialtone: make run starts a server on the embedded defaults, make check
# runs the quick tier (a few minutes), make test the whole suite. See
# README.md.

GO        ?= go
BIN       ?= bin
# Packages that make test also runs under the race detector (slower); for
# example RACE_PKGS=./xmppd/... . Empty: no race run.
RACE_PKGS ?= ./xmppd/... ./offline/ ./account/ ./sms/
TESTFLAGS ?= -count=1 -timeout 20m
# How long make fuzz runs each fuzz target.
FUZZTIME  ?= 15s
BENCHTIME ?= 1s

.PHONY: all build run check test fuzz bench loadtest bench-peers bench-ramp clean

all: build

build:
	$(GO) build -o $(BIN)/xmppd ./cmd/xmppd
	$(GO) build -o $(BIN)/xmppctl ./cmd/xmppctl

run: build
	./$(BIN)/xmppd

# The quick tier, for every change: vet, the unit tests and the socket
# tests on SQLite. -short skips the PostgreSQL suites and the interop
# tests (slixmpp, Prosody, ejabberd, Chromium, the crash test), which
# make test runs.
check:
	$(GO) vet ./...
	$(GO) test -short -count=1 -timeout 10m ./...

# Everything; what CI (.ci/run) runs.
test:
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...
ifneq ($(strip $(RACE_PKGS)),)
	$(GO) test -race $(TESTFLAGS) $(RACE_PKGS)
endif

# A short run of every fuzz target (go test allows one target per run).
fuzz:
	@set -e; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
		for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $$dir $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# A short load run (cmd/xmppload) against a throwaway xmppd on loopback:
# accounts, logins, routing as fast as possible, then at 1,000 msgs/s.
# Not part of make test. LOAD_PORT..LOAD_PORT+2 must be free.
LOAD_PORT     ?= 15222
LOAD_CLIENTS  ?= 100
LOAD_DURATION ?= 5s

loadtest: build
	$(GO) build -o $(BIN)/xmppload ./cmd/xmppload
	@set -e; dir=$$(mktemp -d); \
	export XMPPD_DATA_DIR=$$dir XMPPD_C2S_ADDR=127.0.0.1:$(LOAD_PORT) \
		XMPPD_C2S_DIRECT_TLS_ADDR=127.0.0.1:$$(($(LOAD_PORT)+1)) XMPPD_HTTP_ADDR=127.0.0.1:$$(($(LOAD_PORT)+2)) \
		XMPPD_S2S_ADDR= XMPPD_LOGIN_FAILURES=1000000 XMPPD_LOG_LEVEL=warn; \
	$(BIN)/xmppd 2>$$dir/xmppd.log & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$dir' EXIT; \
	i=0; while [ ! -S $$dir/admin.sock ] && [ $$i -lt 100 ]; do sleep 0.1; i=$$((i+1)); done; \
	L="--addr 127.0.0.1:$(LOAD_PORT) --pid $$pid --label dialtone"; \
	$(BIN)/xmppload $$L --dialtone-xmppctl $(BIN)/xmppctl --save-accounts $$dir/accounts \
		--scenario login --clients $(LOAD_CLIENTS); \
	$(BIN)/xmppload $$L --accounts $$dir/accounts --scenario route --clients $(LOAD_CLIENTS) --duration $(LOAD_DURATION); \
	$(BIN)/xmppload $$L --accounts $$dir/accounts --scenario route --clients $(LOAD_CLIENTS) --duration $(LOAD_DURATION) --rate 1000

# Issue 15's comparison with Debian's Prosody and ejabberd (as root; an
# hour or more at the default sizes, see scripts/bench-peers.sh). Not part
# of make test.
bench-peers: build
	$(GO) build -o $(BIN)/xmppload ./cmd/xmppload
	BIN=$(BIN) scripts/bench-peers.sh

# Issue 15's ramp to 100,000 idle TLS sessions on one xmppd (N; as root
# or with a hard file limit above N; see scripts/bench-ramp.sh). Not part
# of make test.
bench-ramp: build
	$(GO) build -o $(BIN)/xmppload ./cmd/xmppload
	BIN=$(BIN) scripts/bench-ramp.sh

clean:
	rm -rf $(BIN)
