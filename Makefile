# narfs — see README.md. Every target that needs tools installs them first (.ci/deps).
GO        ?= go
BIN       := bin/narfs
PKGS      := ./...
FUZZTIME  ?= 10s
STATICCHECK := v0.8.2
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: all deps build test test-unit test-integration bench fuzz lint demo clean

all: build

deps:
	bash .ci/deps

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/narfs

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) $(PKGS)

test: deps lint
	$(GO) test -race -count=1 -timeout 40m $(PKGS)
	# The mount tests once more on one OS thread: catches lock-ordering and
	# deadlocks that only show when the FUSE server and readers share a P.
	GOMAXPROCS=1 $(GO) test -count=1 -timeout 20m -run 'Mount' ./integration/

bench: deps build
	bash integration/bench.sh

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

demo: deps build
	bash integration/demo.sh

clean:
	rm -rf bin
