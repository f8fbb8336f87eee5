# pushgate: `make run` starts a development server, `make test` runs every
# test (installing redis-server first when it is missing).

GO ?= go

.PHONY: run test fuzz bench generate lint build redis-server

run:
	@echo "pushgate development server on http://localhost:8080 (memory store)"
	@echo "  API key (send):      devkey"
	@echo "  JWT secret (tokens): devsecret"
	@echo "  anonymous reading:   on (except user:* channels)"
	@echo "send a message:"
	@echo "  curl -s localhost:8080/graphql -H 'Authorization: Bearer devkey' -H 'Content-Type: application/json' -d '{\"query\":\"mutation(\$$in: SendInput!) { send(input: \$$in) { message { id cursor } } }\",\"variables\":{\"in\":{\"channel\":\"news\",\"data\":{\"hello\":\"world\"}}}}'"
	@echo "read it back:"
	@echo "  curl -s localhost:8080/graphql -H 'Content-Type: application/json' -d '{\"query\":\"{ history(channel: \\\"news\\\") { nodes { id data createdAt } } }\"}'"
	@echo
	$(GO) run ./cmd/pushgate --api-key dev:devkey --jwt-secret devsecret --allow-anonymous --console

test: redis-server
	$(GO) test -race ./...
	$(MAKE) --no-print-directory fuzz

# Each fuzz target runs briefly on top of its committed seed corpus
# (testdata/fuzz/<Target>/); `make fuzz FUZZTIME=5m` digs deeper.
FUZZTIME ?= 3s
FUZZ_TARGETS = ./pubsub:FuzzParseCursor ./pubsub:FuzzValidChannel ./pubsub:FuzzCompactData ./server:FuzzVerifyToken ./server:FuzzScanSend
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

# Go micro-benchmarks (broker publish and fan-out on memory and Redis, SSE
# fan-out and long-poll over loopback), then the pushbench scenarios of the
# performance budget against freshly spawned servers: bench/run.sh.
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

lint:
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './interop/*' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "not gofmt-ed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

build:
	$(GO) build -o bin/ ./cmd/...

.PHONY: interop
interop: ## Test against real clients (Node.js 20, npm): graphql-ws, subscriptions-transport-ws, graphql-sse, EventSource, graphql-http audit, wx APIs
	cd interop && npm ci --no-audit --no-fund && node --test --test-concurrency=1 ./*.test.mjs
