# One entry point for people and CI. Everything it needs is installed by scripts/testbed.sh.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0
export NO_COLOR := 1
# every molecule scenario (molecule/<name>/molecule.yml); SCENARIOS=nginx runs one
SCENARIOS ?= $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml))
# the proxy `make demo` deploys: nginx, or any other kind (make demo KIND=traefik)
KIND ?= nginx

.PHONY: help testbed demo demo-clean test lint unit sanity molecule bench

help:
	@echo "make demo      deploy nginx (KIND=apache, caddy, traefik; KIND=cloudflared: a tunnel plus nginx on the LAN) in front of the Immich test double in a local container and check it"
	@echo "make test      lint, unit tests, ansible-test sanity and every molecule scenario"
	@echo "make bench     every HTTP proxy against a direct connection (uploads, wrk, reload under load, Ansible cost): docs/benchmarks.md"

testbed:
	bash scripts/testbed.sh all

demo: testbed
	KIND=$(KIND) bash scripts/demo.sh

demo-clean:
	docker rm -f immich-proxy-demo >/dev/null 2>&1 || true

lint: testbed
	yamllint -s .
	ansible-lint
	ruff check plugins tests bench

unit: testbed
	PYTHONPATH=$(CURDIR)/.cache/collections pytest -q tests/unit

sanity: testbed
	bash scripts/sanity.sh

molecule: testbed
	# each behaviour-suite run adds its figures here and renders docs/reliability.md from them
	rm -rf .cache/reliability
	mkdir -p .cache/logs
	for scenario in $(SCENARIOS); do
	  if ! molecule test -s $$scenario 2>&1 | tee .cache/logs/molecule-$$scenario.log; then
	    # the end of a long log is all CI shows: say last what failed
	    echo "== molecule scenario $$scenario failed; what failed (whole log: .cache/logs/molecule-$$scenario.log):"
	    grep -E '(FAILED|ERROR) \.\./|^fatal: |^failed: |"msg": "The behaviour suite failed|short test summary|"E +(fatal: |failed: |Failed: |[A-Za-z_.]+(Error|Exception): )' \
	      .cache/logs/molecule-$$scenario.log | cut -c1-700 | tail -n 40 || true
	    exit 1
	  fi
	done

test: lint unit sanity molecule

bench: testbed
	bash bench/run.sh $(BENCH_ARGS)
