#!/usr/bin/env bash
# make bench: the Go micro-benchmarks, then the standard pushbench scenarios,
# each against a freshly spawned pushgate (memory store, then Redis on a
# private redis-server), loopback only. Figures depend on the machine: run it
# on an otherwise idle one. DURATION and BENCHTIME shorten or lengthen it.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-2000x}
DURATION=${DURATION:-10s}

echo "== Go micro-benchmarks (BENCHTIME=$BENCHTIME)"
go test -run='^$' -bench=. -benchmem -benchtime="$BENCHTIME" ./pubsub/ ./server/

mkdir -p bin
go build -o bin/pushgate ./cmd/pushgate
go build -o bin/pushbench ./cmd/pushbench

# A private redis-server on a free port, never the shared 6379, below the
# ephemeral range (the scenarios' client ports would collide with it).
dir=$(mktemp -d)
redis_pid=
trap 'if [ -n "$redis_pid" ]; then kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; fi; rm -rf "$dir"' EXIT
start_redis() {
	for _ in $(seq 20); do
		port=$(shuf -i 20000-32000 -n 1)
		ss -ltn | grep -q ":$port " && continue
		redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
		redis_pid=$!
		for _ in $(seq 100); do
			if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then return 0; fi
			kill -0 "$redis_pid" 2>/dev/null || break
			sleep 0.05
		done
		kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; redis_pid=
	done
	echo "could not start redis-server:" >&2
	cat "$dir/redis.log" >&2
	return 1
}
start_redis
redis_url="redis://127.0.0.1:$port/0"

# Each scenario's -budget figures are the budget column of
# docs/performance.md (TestBenchBudgetsMatchDocs holds the two together).
# pushbench prints a pass/FAIL line per budget; they are repeated at the
# end, and make bench fails when one was missed.
missed=0
scenario() {
	local title=$1
	shift
	echo
	echo "== $title"
	if [[ " $* " == *" -redis-url "* ]] && ! redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
		echo "redis-server on port $port is gone; its log:" >&2
		cat "$dir/redis.log" >&2
		exit 1
	fi
	if ! bin/pushbench -spawn -spawn-bin bin/pushgate -quiet "$@" | tee "$dir/scenario.out"; then
		# A missed budget is reported at the end; any other failure stops here.
		grep -q '^budget .*: FAIL$' "$dir/scenario.out" || exit 1
		missed=$((missed + 1))
	fi
	grep '^budget ' "$dir/scenario.out" | while read -r line; do
		printf '%s: %s\n' "$title" "${line#budget }"
	done >>"$dir/budgets"
}

scenario "1,000 SSE subscribers, one channel, 100 msg/s (memory)" -sse 1000 -rate 100 -duration "$DURATION" \
	-budget 'server.cpuPerDeliveryUs<=7' -budget 'latency.p99Ms<=15'
scenario "1,000 WebSocket subscribers, one channel, 100 msg/s (memory)" -ws 1000 -rate 100 -duration "$DURATION" \
	-budget 'server.cpuPerDeliveryUs<=9' -budget 'latency.p99Ms<=15'
scenario "1,000 graphql-sse subscribers, one channel, 100 msg/s (memory)" -gsse 1000 -rate 100 -duration "$DURATION"
scenario "1,000 SSE subscribers, one channel, 100 msg/s (Redis)" -sse 1000 -rate 100 -duration "$DURATION" -redis-url "$redis_url" \
	-budget 'latency.p99Ms<=20'
scenario "10,000 idle SSE connections" -idle -sse 10000 -budget 'server.memPerConnKB<=16'
scenario "10,000 idle WebSocket connections" -idle -ws 10000 -budget 'server.memPerConnKB<=24'
scenario "10,000 idle graphql-sse connections" -idle -gsse 10000
scenario "10,000 SSE subscribers on their own user:<id> channel, 5,000 sends/s (memory)" -sse 10000 -channels per-sub -rate 5000 -senders 32 -duration "$DURATION" \
	-budget 'latency.p99Ms<=20'
scenario "send over HTTP keep-alive, 64 senders, as fast as possible (memory)" -sse 1 -rate 0 -senders 64 -duration "$DURATION" \
	-budget 'send.callsPerSec>=54000'
scenario "send over HTTP keep-alive, 64 senders, as fast as possible (Redis)" -sse 1 -rate 0 -senders 64 -duration "$DURATION" -redis-url "$redis_url" \
	-budget 'send.callsPerSec>=30000'

echo
echo "== budgets (docs/performance.md)"
cat "$dir/budgets"
if [ "$missed" -gt 0 ]; then
	echo "budgets missed in $missed scenario(s): see the FAIL lines above" >&2
	exit 1
fi
