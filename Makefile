# pushgate: `make run` starts a development server, `make test` runs every
# test (installing redis-server first when it is missing): the Go tests with
# -race, the interop suites against race-built servers, then the fuzz targets
# briefly.

GO ?= go

.PHONY: run test fuzz flake bench generate docs lint build docker redis-server

run:
	@echo "pushgate development server on http://localhost:8080 (memory store)"
	@echo "  API key (send):      devkey"
	@echo "  JWT secret (tokens): pushgate-dev-secret-not-for-production"
	@echo "  browser origins:     http://localhost:* and http://127.0.0.1:* (any port)"
	@echo "  anonymous reading:   on (except user:* channels)"
	@echo "send a message:"
	@echo "  curl -s localhost:8080/graphql -H 'Authorization: Bearer devkey' -H 'Content-Type: application/json' -d '{\"query\":\"mutation(\$$in: SendInput!) { send(input: \$$in) { message { id cursor } } }\",\"variables\":{\"in\":{\"channel\":\"news\",\"data\":{\"hello\":\"world\"}}}}'"
	@echo "read it back:"
	@echo "  curl -s localhost:8080/graphql -H 'Content-Type: application/json' -d '{\"query\":\"{ history(channel: \\\"news\\\") { nodes { id data createdAt } } }\"}'"
	@echo
	$(GO) run ./cmd/pushgate --api-key dev:devkey --jwt-secret pushgate-dev-secret-not-for-production \
		--allowed-origin 'http://localhost:*' --allowed-origin 'http://127.0.0.1:*' --allow-anonymous --console

test: redis-server
	$(GO) test -race ./...
	@# The memory bound is asserted without -race (the race runtime drops
	@# pooled objects and inflates allocation counts).
	$(GO) test -count=1 -run '^TestMemoryBound' ./server/
	$(MAKE) --no-print-directory interop RACE=1
	$(MAKE) --no-print-directory sdk-test
	$(MAKE) --no-print-directory console-test
	$(MAKE) --no-print-directory fuzz

# The client SDK (clients/js): its unit tests, and its runs against a real
# pushgate on mini-program, browser and Node runtimes (Node.js >= 18).
.PHONY: sdk-test console-test
sdk-test: redis-server
	cd clients/js && npm ci --no-audit --no-fund && npm test

# The console page in headless Chromium (Debian's chromium, driven by
# playwright-core) against a real pushgate on Redis.
console-test: redis-server
	cd console/test && npm ci --no-audit --no-fund && npm test

# Each fuzz target runs briefly on top of its committed seed corpus
# (testdata/fuzz/<Target>/); `make fuzz FUZZTIME=5m` digs deeper.
FUZZTIME ?= 3s
FUZZ_TARGETS = ./pubsub:FuzzParseCursor ./pubsub:FuzzValidChannel ./pubsub:FuzzCompactData ./pubsub:FuzzCursorRead \
	./server:FuzzVerifyToken ./server:FuzzScanSend ./server:FuzzWSMessage ./server/access:FuzzOriginAllowed \
	./server:FuzzEventsQuery ./server:FuzzPollQuery
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

# A flake hunt: the packages that spawn servers, every test COUNT times
# (RACE=1: with -race), or one test: make flake RUN=TestX PKG=./server COUNT=200.
FLAKE_PKGS = ./server ./pubsub ./e2e
COUNT ?= 20
FLAKE_TIMEOUT ?= 4h
flake: redis-server
	$(GO) test $(if $(filter 1,$(RACE)),-race) -count=$(COUNT) -timeout=$(FLAKE_TIMEOUT) \
		$(if $(RUN),-run '$(RUN)') $(or $(PKG),$(FLAKE_PKGS))

# Go micro-benchmarks (broker publish and fan-out on memory and Redis, SSE
# fan-out and long-poll over loopback), then the pushbench scenarios of the
# performance budget against freshly spawned servers: bench/run.sh. It ends
# with a pass/FAIL line per budget figure and fails when one was missed.
bench: redis-server
	bench/run.sh

# The Redis tests start their own redis-server on a free port.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server is not on PATH: installing it"; \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "cannot install redis-server (no apt-get): install it with your package manager, then run make test again" >&2; exit 1; \
		elif [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
		elif sudo -n true 2>/dev/null; then \
			sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
		else \
			echo "cannot install redis-server (not root, no passwordless sudo): apt-get install redis-server, then run make test again" >&2; exit 1; \
		fi; \
	}

generate:
	$(GO) tool gqlgen generate

# docs/configuration.md is generated from the flag definitions
# (TestConfigDocInSync fails when it is stale).
docs:
	$(GO) run ./cmd/pushgate print-config-doc > docs/configuration.md

lint:
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './interop/*' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "not gofmt-ed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@for os in darwin windows; do \
		echo "GOOS=$$os: go build, go vet"; \
		GOOS=$$os $(GO) build ./... && GOOS=$$os $(GO) vet ./... || exit 1; \
	done

build:
	$(GO) build -o bin/ ./cmd/...

# The container image (Dockerfile): a static binary on distroless, about
# 20 MB. The version is the checkout's tag or commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
DOCKER ?= docker
docker:
	$(DOCKER) build --build-arg VERSION=$(VERSION) -t pushgate:$(VERSION) -t pushgate:latest .

# RACE=1 (as make test sets it) builds the servers the suite spawns with -race.
.PHONY: interop
interop: ## Test against real clients (Node.js 20, npm): graphql-ws, subscriptions-transport-ws, graphql-sse, EventSource, graphql-http audit, wx APIs
	cd interop && npm ci --no-audit --no-fund && \
		PUSHGATE_RACE=$(RACE) node --test --test-concurrency=1 ./*.test.mjs
