# Benchmark targets, included from the main Makefile (`include bench/bench.mk`). Never part of `make test`.
BENCH_ARGS ?=
SOAK_ARGS ?=

.PHONY: bench
bench: $(VENV)/.installed ## ATP vs LiteLLM and Portkey on an nginx mock, interleaved (a few minutes; BENCH_ARGS=--quick)
	$(PY) bench/run.py $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: $(VENV)/.installed ## The same comparison in about a minute of load
	$(PY) bench/run.py --quick $(BENCH_ARGS)

.PHONY: bench-cache
bench-cache: $(VENV)/.installed ## Response-cache hits against uncached ATP in one run, no peers needed (BENCH_ARGS=--quick)
	$(PY) bench/run.py --targets atp,atp-cache $(BENCH_ARGS)

.PHONY: bench-semantic-route
bench-semantic-route: $(VENV)/.installed ## A LinUCB route with semantic features against plain ATP and LinUCB without them, one run
	$(PY) bench/run.py --targets atp,atp-linucb,atp-semantic $(BENCH_ARGS)

.PHONY: bench-soak
bench-soak: $(VENV)/.installed ## Memory soak of ATP's full path: 10 min of wrk load, RSS growth per service (SOAK_ARGS=--duration N)
	$(PY) bench/soak.py $(SOAK_ARGS)

INGEST_ARGS ?=

.PHONY: bench-ingest
bench-ingest: $(VENV)/.installed ## Observations/s into PostgreSQL via gRPC Ingest vs a raw asyncpg COPY of the same rows, and the ratio (INGEST_ARGS=--rounds 1)
	$(PY) bench/ingest.py $(INGEST_ARGS)

DIALECTS_ARGS ?=

.PHONY: bench-dialects
bench-dialects: $(VENV)/.installed ## Responses and Messages (streamed and not) against chat completions on ATP's full path, same run (DIALECTS_ARGS=--rounds 1)
	$(PY) bench/dialects.py $(DIALECTS_ARGS)
.PHONY: bench-semantic
bench-semantic: $(VENV)/.installed ## Semantic routing features per 4 KB prompt (p50, one core) against compute_features alone
	$(PY) bench/semantic_features.py
CONSOLE_ARGS ?=

.PHONY: bench-console
bench-console: $(VENV)/.installed ## Each console page's admin calls with 100,000 observations in PostgreSQL, against the 300 ms budget (CONSOLE_ARGS=--rounds 10)
	$(PY) bench/console_pages.py $(CONSOLE_ARGS)
