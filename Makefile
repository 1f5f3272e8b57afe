# Thin aliases for dev.py, which needs nothing but Python 3.11+.
.PHONY: run test lint bench clean
run:
	python3 dev.py run
test:
	python3 dev.py test
lint:
	python3 dev.py lint
bench:
	python3 dev.py bench
clean:
	rm -rf .venv .mypy_cache .pytest_cache .ruff_cache
