# The two commands of the README, plus a few helpers. Everything installs itself on first use.
.PHONY: demo test test-cluster lint install up down status bench chaos clean

demo: install          ## set up everything and run the pipeline end to end
	.venv/bin/ubi demo

test: install          ## run unit and integration tests (starts Mosquitto and Kafka if needed)
	.venv/bin/ubi stack up
	.venv/bin/python -m pytest

test-cluster: install  ## broker, controller, leader and stage faults on a 3-broker cluster of its own (ports 1993, 9292-9300)
	.venv/bin/python -m pytest -m cluster tests/cluster

lint: install          ## ruff (lint + format check) on everything, mypy on the cores
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

install:
	bash deploy/local/install.sh

up: install
	.venv/bin/ubi stack up

down:
	.venv/bin/ubi stack down

status:
	.venv/bin/ubi stack status

bench: install
	.venv/bin/ubi stack up
	.venv/bin/python bench/run_all.py

chaos: install         ## 20 randomised fault runs against a clean run (own brokers on ports 1893/9192; ~1 h)
	.venv/bin/python bench/chaos.py --runs 20

clean: down
	rm -rf .ubi
