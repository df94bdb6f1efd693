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
	@echo "make bench     upload benchmark: Immich double directly vs through nginx"

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
	for scenario in $(SCENARIOS); do molecule test -s $$scenario; done

test: lint unit sanity molecule

bench: testbed
	bash bench/run.sh
