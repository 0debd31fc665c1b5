PYTHON ?= python3
export PYTHON

.PHONY: deps demo test bench

deps:
	@bash scripts/deps.sh

demo: deps
	@bash scripts/demo.sh

test: deps
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

bench: deps
	$(PYTHON) bench/bench_scan.py
