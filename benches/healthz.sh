#!/usr/bin/env bash
# /healthz throughput and latency with 64 concurrent connections (BENCHMARKS.md).
# Starts the release binary on a free loopback port with a throwaway data directory,
# drives it with wrk (2 threads, 64 connections, 15 s), prints wrk's latency
# distribution, then stops the server with SIGTERM.
# Run: cargo build --release && benches/healthz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/patchward
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PATCHWARD_LOG=warn "$bin" --data-dir "$tmp/data" serve --listen "127.0.0.1:$port" >/dev/null &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
wrk -t2 -c64 -d15s --latency "http://127.0.0.1:$port/healthz"
echo "server RSS after load: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$pid/status)"
