# The two commands of README.md.  Everything else is `taomake` / `snakemake`.
.PHONY: demo test lint

demo:  ## set up, then build the demo pipeline on CPU and print the results
	bash scripts/demo.sh

test:  ## set up everything the tests need, then run them
	bash scripts/test.sh

lint:
	.venv/bin/ruff check compiler taomake tests benchmarks
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_lint.py  # snakemake --lint: see there
