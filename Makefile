# kanaria: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup demo demo-rollback test chaos bench check-templates build-lambdas

setup:
	@scripts/setup

## The local demo: an ECR push rolled out as a canary on emulated AWS, with its timeline.
demo: setup
	@$(ENV) cargo build --quiet --locked -p kanaria-local && "$$CARGO_TARGET_DIR/debug/kanaria-local" demo

## The same with an image that crashes after it starts: watch the rollback.
demo-rollback: setup
	@$(ENV) cargo build --quiet --locked -p kanaria-local && "$$CARGO_TARGET_DIR/debug/kanaria-local" demo --fail

## Every test, template and state-machine check (CI runs exactly this).
test:
	@scripts/test

## The whole chaos matrix (every mutating operation × every fault kind, 114 runs on the strict
## emulated AWS, about 17 minutes on 2 cores): prints the table and writes it to $CARGO_TARGET_DIR/chaos.md.
chaos: setup
	@$(ENV) mkdir -p "$$CARGO_TARGET_DIR" && KANARIA_CHAOS_REPORT="$$CARGO_TARGET_DIR/chaos.md" cargo test --locked --test chaos -- --ignored --nocapture chaos_matrix

## Benchmarks: builds the release binaries, measures cold start, memory, size, time to roll back,
## cost per rollout and event throughput on this machine, and rewrites BENCHMARKS.md.
bench:
	@scripts/bench

check-templates: setup
	@scripts/check-templates

## Lambda packages as SAM builds them (cargo-lambda + zig, arm64).
build-lambdas: setup
	@$(ENV) sam build
