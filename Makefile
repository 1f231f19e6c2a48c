# Shortcuts for the usual commands; each calls the script or tool it names.
# The README's two commands work without make: bash scripts/quickstart.sh, bash scripts/test.sh.

.PHONY: setup demo stop test lint format bench stack-up stack-down

# .venv with the pinned dependencies, the test tools and this project (editable).
setup:
	bash scripts/setup.sh

# Local Prefect and S3 servers, the sample data, then the training and inference flows.
demo:
	bash scripts/quickstart.sh

# Stop the servers the demo started (their data stays in .local/).
stop:
	bash scripts/stop.sh

# The test suite; pass pytest arguments as ARGS, e.g. make test ARGS="tests/unit -x".
test:
	bash scripts/test.sh $(ARGS)

lint: setup
	python3 scripts/lock.py --check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: setup
	.venv/bin/python benchmarks/benchmark.py

# The docker compose stack: Prefect server, MinIO, a docker worker (needs .env: bash scripts/make-env.sh).
stack-up:
	docker compose up -d --wait

# Stop it and remove its flow containers too; the volumes (Prefect database, bucket) stay
# unless VOLUMES=1 (docs/operations.md#stopping).
stack-down:
	bash scripts/stack-down.sh $(if $(filter 1 yes true,$(VOLUMES)),--volumes)
