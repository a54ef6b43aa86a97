# boxfleet: the controller, the node exporter, their tools and tests.

GO        ?= go
# The version recipe, one for every build: the Makefile's own, and the
# Dockerfiles', which print it with `make -s ldflags VERSION=… REVISION=…`
# (the image build has no .git to describe). GO_VERSION is go.mod's
# toolchain, the Go `make docker` builds the images with.
GO_VERSION := $(shell sed -n 's/^toolchain go//p' go.mod)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
VPKG      := github.com/prometheus/common/version
LDFLAGS   := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH) \
             -X $(VPKG).BuildUser=$(USER) -X $(VPKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)

.PHONY: all build ldflags docker dist ui ui-deps ui-test browser tools test test-short lint vulncheck bench load fuzz run demo node clean

all: build

# The admin UI (web/) is built into controller/webui/dist before the Go
# build embeds it. A plain `go build` without it still compiles and serves a
# page saying the UI is missing.
build: ui
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/singbox_exporter ./cmd/singbox_exporter
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/boxfleet ./cmd/boxfleet

# The linker flags that stamp the version, for the Dockerfiles.
ldflags:
	@echo '$(LDFLAGS)'

# The two images, stamped like `make build`'s binaries and built with
# go.mod's toolchain.
DOCKER_ARGS := --build-arg GO_VERSION=$(GO_VERSION) --build-arg VERSION=$(VERSION) \
               --build-arg REVISION=$(REVISION) --build-arg BRANCH=$(BRANCH)
docker:
	docker build -f docker/Dockerfile.boxfleet $(DOCKER_ARGS) -t boxfleet .
	docker build -f docker/Dockerfile.exporter $(DOCKER_ARGS) -t singbox_exporter .

# npm ci only when the lock file changed since the last install.
ui-deps: web/node_modules/.package-lock.json
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

ui: ui-deps
	cd web && npm run build

# Unit tests of the UI (stores, formatting, components, message files, the
# generated API types against openapi.json).
ui-test: ui-deps
	cd web && npx vitest run

# Debian's Chromium for the browser tests (e2e/ui), installed when missing.
browser:
	bash tools/chromium.sh

# The exporter for the nodes' architectures, served by `boxfleet serve
# --install.dir dist` to the one-line node install. Static (no cgo), so it
# runs on any Linux distribution.
dist:
	mkdir -p dist
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/singbox_exporter-linux-$$arch ./cmd/singbox_exporter || exit 1; \
	done

# The real programs the tests run, built once into a git-ignored cache.
tools:
	bash tools/build.sh all

# gofmt and go vet, then golangci-lint with the committed .golangci.yml
# (staticcheck, errorlint, revive, misspell, modernize, goimports…), then
# govulncheck. Both linters are built from the module proxy into the tools
# cache (tools/golangci-lint, tools/govulncheck) on first use.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	"$$(bash tools/build.sh golangci-lint)" run ./...
	bash tools/vulncheck.sh

# Known vulnerabilities in what the binaries call; see tools/vulncheck.sh
# for the database it uses when vuln.go.dev cannot be reached.
vulncheck:
	bash tools/vulncheck.sh

# The one test command (README and .ci/run use it): lint, then every test,
# integration tests with real sing-box included. BOXFLEET_UI_E2E makes the
# browser test (e2e/ui) required rather than skipped; BOXFLEET_UI_BINARY is
# the binary `make build` just produced, which controller/webui's test runs
# to check that it carries the UI.
#
# Packages run two at a time (two cores; most tests wait on real programs):
# first those with concurrency under the race detector, whole (their
# Prometheus and MariaDB tests included), then the rest without it (they
# drive external processes, where the detector sees nothing). Three
# packages then run alone, one after the other, because what they assert
# depends on the machine's pace: exporter/e2e compares the Clash API's
# polled attribution with the bytes that crossed, the soak times its faults
# against alert rules' `for:` and the lease, and the browser test holds the
# users page to its first render in under a second.
RACE_PKGS  := ./controller/... ./exporter/meter ./exporter/agent ./exporter/sbapi ./subscribe/...
ALONE_PKGS := ./exporter/e2e ./e2e/soak ./e2e/ui
TEST_ENV   := BOXFLEET_UI_E2E=1 BOXFLEET_UI_BINARY=$(CURDIR)/bin/boxfleet
test: lint tools browser build ui-test
	$(TEST_ENV) $(GO) test -race -count=1 -p 2 -timeout 20m $(RACE_PKGS)
	$(TEST_ENV) $(GO) test -count=1 -p 2 -timeout 20m $$($(GO) list ./... | grep -vxF "$$($(GO) list $(RACE_PKGS) $(ALONE_PKGS))")
	$(TEST_ENV) $(GO) test -count=1 -p 1 -timeout 20m $(ALONE_PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# The edit-test loop: everything that needs no real external program
# (sing-box, Prometheus, Alertmanager, MariaDB…), in under a minute. Tests
# that run one skip under -short, saying so.
test-short:
	$(GO) test -count=1 -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./exporter/... ./controller/... ./subscribe/...

load:
	BOXFLEET_LOAD=1 $(GO) test -count=1 -run 'TestLoad|Load' -v ./exporter/e2e ./controller/...

# Every fuzzer of outside input, FUZZTIME each (their seed corpora run in
# every go test; make test fuzzes each for 5 s, about 3 min with the
# instrumented builds). A short minimisation keeps a slow input from stalling a run.
FUZZTIME ?= 30s
FUZZERS := exporter/clashapi:FuzzParseLogLine exporter/clashapi:FuzzDecodeSnapshot \
	exporter/sbapi:FuzzDecodeBatch exporter/v2rayapi:FuzzDecodeStats \
	controller/accounting:FuzzScanVector controller/actions:FuzzWebhook controller/api:FuzzAPIBodies controller/api:FuzzNodeRegistration \
	internal/sbconfig:FuzzInjectUsers subscribe:FuzzRenderProfile subscribe/links:FuzzRoundTrip
#
# Go 1.26's fuzzing coordinator sometimes fails a run at the end of
# -fuzztime with a bare "context deadline exceeded" and no failing input
# (golang/go#75804, fixed in Go 1.27). Such a run, and only such a run (no
# new input written under testdata/fuzz), is run once more.
FUZZ = $(GO) test ./$${f%%:*} -run '^$$' -fuzz "^$${f\#\#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
fuzz:
	@for f in $(FUZZERS); do \
	  echo "fuzz $$f"; \
	  out=$$($(FUZZ) 2>&1); rc=$$?; echo "$$out"; \
	  [ $$rc -eq 0 ] && continue; \
	  if echo "$$out" | grep -qx '    context deadline exceeded' && \
	     [ -z "$$(git status --porcelain -- "$${f%%:*}/testdata/fuzz")" ]; then \
	    echo "fuzz $$f: Go's end-of-fuzztime race (golang/go#75804), no input failed: once more"; \
	    $(FUZZ) || exit 1; \
	  else exit 1; fi; \
	done

# The whole loop on loopback (README's first command): controller on SQLite,
# two sing-box nodes with their exporters, Prometheus, Alertmanager,
# blackbox. Ctrl-C stops everything.
demo: ui
	bash scripts/demo.sh

run: demo

# One local node only: sing-box with the exporter beside it.
node: build tools
	bash scripts/run-local.sh

clean:
	rm -rf bin
