# ragfence: `make run` for the demo, `make test` for the test suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN := bin/ragfence
ADDR ?= :8080

# scripts/devdb.sh provisions PostgreSQL + pgvector (or checks DATABASE_URL)
# and prints the two URLs; every target that needs a database goes through it.
DBENV = eval "$$(scripts/devdb.sh --quiet)"

.PHONY: run test lint bench bench-quick db build vet unit generate check-generated clean help load-tools load

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: build ## provision the database, migrate, seed the demo, serve on :8080 and print example calls
	@$(DBENV); \
	$(BIN) migrate --db "$$DATABASE_URL"; \
	$(BIN) demo --db "$$DATABASE_URL" --out ragfence-demo --url http://localhost$(ADDR); \
	echo; echo "Serving on $(ADDR); Ctrl-C stops."; \
	exec $(BIN) serve --db "$$DATABASE_URL" --policy ragfence-demo/policy.yaml \
		--jwt-secret-file ragfence-demo/jwt-secret --addr $(ADDR)

test: lint ## make lint, the whole test suite (with a streaming replica) and `ragfence bench --quick` against a real PostgreSQL + pgvector
	@$(DBENV); replica="$$(scripts/replica.sh --quiet)"; eval "$$replica"; \
	export DATABASE_URL RAGFENCE_TEST_DATABASE_URL RAGFENCE_TEST_REPLICA_URL RAGFENCE_REQUIRE_DB=1; \
	$(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory bench-quick

STATICCHECK := bin/staticcheck

lint: ## gofmt, go vet and staticcheck (pinned in tools/lint/go.mod), all clean
	@unformatted="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -w these files:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd tools/lint && $(GO) build -o ../../$(STATICCHECK) honnef.co/go/tools/cmd/staticcheck
	$(STATICCHECK) ./...

bench-quick: build ## the CI benchmark: fails if ragfence's recall@10 < 0.98 or it returns < k rows
	@$(DBENV); $(BIN) bench --quick --db "$$DATABASE_URL" --markdown bench-quick.md
	@grep -E '^- .*(met|MISSED)$$' bench-quick.md

bench: build ## the full side-by-side benchmark; writes docs/bench/ (results.md, results.json, charts)
	@$(DBENV); mkdir -p docs/bench; \
	$(BIN) bench --db "$$DATABASE_URL" --markdown docs/bench/results.md --json docs/bench/results.json --charts docs/bench

VEGETA := bin/vegeta

load-tools: ## build bin/vegeta (pinned in tools/load/go.mod)
	cd tools/load && $(GO) build -o ../../$(VEGETA) github.com/tsenart/vegeta/v12

load: build load-tools ## fixed-rate load and fault runs with vegeta (scripts/load.sh; MODES="baseline db-restart pool sigterm sigkill replica" or all); not part of make test
	@$(DBENV); unset DATABASE_URL; scripts/load.sh $(MODES)

db: ## provision PostgreSQL + pgvector (and the test replica) and print the database URLs
	@scripts/devdb.sh; scripts/replica.sh

build: ## build bin/ragfence
	$(GO) build -o $(BIN) ./cmd/ragfence

vet:
	$(GO) vet ./...

generate: ## regenerate sqlc code (sqlc pinned in sqlc/tools.mod)
	cd sqlc && $(GO) tool -modfile=tools.mod sqlc generate

check-generated: generate ## fail if generated code is out of date
	git diff --exit-code -- sqlc/store

clean:
	rm -rf bin ragfence-demo bench-quick.md
