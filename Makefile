# Dialtone: make run starts a server on the embedded defaults, make test
# runs the whole suite. See README.md.

GO        ?= go
BIN       ?= bin
# Packages that make test also runs under the race detector (slower); for
# example RACE_PKGS=./xmppd/... . Empty: no race run.
RACE_PKGS ?= ./xmppd/ ./offline/
TESTFLAGS ?= -count=1 -timeout 20m
# How long make fuzz runs each fuzz target.
FUZZTIME  ?= 15s
BENCHTIME ?= 1s

.PHONY: all build run test fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/xmppd ./cmd/xmppd
	$(GO) build -o $(BIN)/xmppctl ./cmd/xmppctl

run: build
	./$(BIN)/xmppd

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

clean:
	rm -rf $(BIN)
