# pushbench: SSE vs WebSocket vs polling, measured.
# `make bench` runs the comparison; `make test` runs every test.
GO      ?= go
BIN     := bin
PROGS   := server loadgen bench netshape
FUZZTIME ?= 10s

.PHONY: all build test vet race fuzz bench bench-full gobench fmt clean

all: build

build:
	$(GO) build -o $(BIN)/server ./servers/cmd/server
	$(GO) build -o $(BIN)/loadgen ./loadgen/cmd/loadgen
	$(GO) build -o $(BIN)/bench ./bench/cmd/bench
	$(GO) build -o $(BIN)/netshape ./network/cmd/netshape
	$(GO) build -o $(BIN)/readfloor ./loadgen/cmd/readfloor
	$(GO) build -o $(BIN)/answerfloor ./loadgen/cmd/answerfloor

vet:
	$(GO) vet ./...

# test: vet, then every test with the race detector (the browser test needs
# Chromium: apt-get install chromium; outside CI it skips without it).
# nbio's engine is not race-detector clean (its own go:norace code), so its
# implementation tests skip under -race and run once more without it.
test: vet
	$(GO) test -race -count=1 -timeout 10m ./...
	$(GO) test -count=1 -run '/ws/nbio$$' ./servers/impls/

# fuzz: run each fuzz target for FUZZTIME (they also run as unit tests on
# their seeds in `make test`).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# bench: the curated default tables (under 10 minutes on 2 cores; see bench/matrix).
bench: build
	$(BIN)/bench

# bench-full: every table at full size, up to the open-files limit.
bench-full: build
	$(BIN)/bench -full

# gobench: the same comparison at small scale as Go benchmarks, for benchstat.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee $(BIN)/gobench.txt

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
