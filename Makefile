# rke2-hanode — the front door. Every command here is what the README and CI use.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/rke2-hanode/rke2-hanode/pkg/version.Version=$(VERSION) \
             -X github.com/rke2-hanode/rke2-hanode/pkg/version.Commit=$(COMMIT)
BIN       := bin

.PHONY: all build test test-short lint demo e2e package bench rke2sim-artifacts fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/rke2-hanode ./cmd/rke2-hanode
	cd test/rke2sim && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(CURDIR)/$(BIN)/rke2sim ./cmd/rke2sim

# The whole suite: unit, in-process integration and loopback-cluster tests, with the race detector;
# then rke2sim's own module (it embeds etcd, which the daemon's module must never link).
test: build
	RKE2SIM_BIN=$(CURDIR)/$(BIN)/rke2sim $(GO) test -race -count=1 -timeout 50m ./...
	cd test/rke2sim && RKE2SIM_BIN=$(CURDIR)/$(BIN)/rke2sim $(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -short -count=1 ./...
	cd test/rke2sim && $(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd test/rke2sim && $(GO) vet ./...
	@if $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 -version >/dev/null 2>&1; then \
		$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...; \
	else echo "staticcheck could not be installed from the module proxy; skipped"; fi

# A simulated cluster on loopback: 3 servers and 2 agents, no root needed.
demo: build
	$(BIN)/rke2-hanode demo --servers 3 --agents 2

# The test bed's upgrade scenarios install one minor, roll to the next and are refused a skipped
# minor and a downgrade: artifacts of each version beside the default ones.
E2E_RKE2_VERSIONS = v1.34.5+rke2r1 v1.35.2+rke2r1 v1.36.1+rke2r1 v1.37.0+rke2r1

rke2sim-artifacts: build
	./test/rke2sim/make-artifacts.sh $(BIN)/rke2sim $(BIN)/rke2sim-artifacts
	for v in $(E2E_RKE2_VERSIONS); do ./test/rke2sim/make-artifacts.sh $(BIN)/rke2sim $(BIN)/rke2sim-artifacts-$$v $$v || exit 1; done

package: build
	./packaging/build.sh $(VERSION)

# The multi-host test bed (root): systemd containers on a bridge, real ARP.
# The previous release's package beside this one's, for the bed's mixed-daemon-versions scenario.
e2e: package rke2sim-artifacts
	./test/e2e/build-previous.sh dist/previous
	./test/e2e/run.sh

bench: build
	./docs/bench.sh

fuzz:
	$(GO) test ./pkg/config -run '^$$' -fuzz FuzzLoad -fuzztime 60s

clean:
	rm -rf $(BIN) dist
