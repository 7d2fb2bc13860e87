# godwit: `make run` builds and runs the default model; `make test` runs every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: build run test fuzz vet fmt

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/godwit ./cmd/godwit

# Until the HTTP server exists, run generates from the default model.
run: build
	./bin/godwit run -p "Once upon a time" -n 64

# The seed corpus of every fuzz target runs as part of the normal tests.
test: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

# Fuzz the GGUF parser (FUZZTIME=10m by default).
FUZZTIME ?= 10m
fuzz:
	$(GO) test ./models/gguf/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
