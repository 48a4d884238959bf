# Two commands for a new user: `make lab` (bring up the lab stack) and `make test` (run every test).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
export NO_COLOR ?= 1

.PHONY: help lab lab-down plan bench bench-series test lint unit molecule testbench constraints clean

help:
	@echo "make lab        create the lab containers, converge site.yml on them, print what runs where"
	@echo "make lab LAB_EXTRA=inventories/lab-pair.yml   the same lab with a Prometheus pair and VictoriaMetrics"
	@echo "make lab-down   remove the lab containers"
	@echo "make plan ENV=staging   what site.yml would run where, from the inventory alone (contacts no host);"
	@echo "                        VAULT_PASSWORD_FILE=<file> for an inventory with a vault"
	@echo "make bench      time a fresh converge, the no-op rerun and fleet growth on bench containers (docs/benchmark.md)"
	@echo "make bench-series   CPU, memory, disk and samples/s of a Prometheus pair and VictoriaMetrics per 100k"
	@echo "                    synthetic series, at 50k, 200k and 500k (docs/benchmark.md)"
	@echo "make test       lint, unit tests and every molecule scenario ($(SCENARIOS))"
	@echo "make molecule SCENARIOS=node_exporter   one scenario"

# The Python tools, pinned; rebuilt when the pins change.
$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

# Docker engine running and the Debian 12/13 systemd images built (only when their recipe changed).
testbench: $(VENV)/.installed
	$(BIN)/python tools/testbench.py all

# LAB_EXTRA=<inventory file> adds to the lab's inventory (inventories/lab-pair.yml: a Prometheus pair and
# VictoriaMetrics on the same three containers).
lab: testbench
	$(BIN)/ansible-playbook -i inventories/lab $(if $(LAB_EXTRA),-i "$(LAB_EXTRA)") playbooks/lab.yml

lab-down: $(VENV)/.installed
	$(BIN)/ansible-playbook -i inventories/lab playbooks/lab_down.yml

# What site.yml would do on inventories/$(ENV) (hosts, roles, units, ports and who reaches them, backups,
# certificates), read from the inventory alone: no host is contacted, nothing changes; fails, naming each
# variable, on what the run would refuse (playbooks/plan.yml).
INVENTORIES := $(sort $(notdir $(patsubst %/hosts.yml,%,$(wildcard inventories/*/hosts.yml))))
plan: $(VENV)/.installed
	@[ -n "$(ENV)" ] && [ -f "inventories/$(ENV)/hosts.yml" ] \
	  || { echo "make plan ENV=<one of: $(INVENTORIES)> [VAULT_PASSWORD_FILE=<file>]" >&2; exit 2; }
	$(BIN)/ansible-playbook -i "inventories/$(ENV)" playbooks/plan.yml \
	  $(if $(VAULT_PASSWORD_FILE),--vault-password-file "$(VAULT_PASSWORD_FILE)")

# Not part of `make test`: at most 25 minutes on containers of its own. BENCH_ARGS=--quick to try it out.
bench: testbench
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

# Not part of `make test`: at most 20 minutes on containers of its own (sbench-*), and alone on the machine
# (its figures are CPU shares). SERIES_BENCH_ARGS=--quick to try it out.
bench-series: testbench
	$(BIN)/python tools/series_bench.py $(SERIES_BENCH_ARGS)

test: lint unit molecule

lint: $(VENV)/.installed
	$(BIN)/yamllint --strict .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --profile production --offline

# promtool (rule tests) and amtool (Alertmanager configs) on the controller: not on PyPI; Debian carries them.
$(BIN)/promtool: tools/debian_tool.py | $(VENV)/.installed
	$(BIN)/python tools/debian_tool.py prometheus promtool $(BIN)

$(BIN)/amtool: tools/debian_tool.py | $(VENV)/.installed
	$(BIN)/python tools/debian_tool.py prometheus-alertmanager amtool $(BIN)

# VictoriaMetrics with its vmbackup and vmrestore (the backup program's unit tests run the real ones), from
# Debian's package: one download for the three.
$(BIN)/victoria-metrics $(BIN)/vmbackup $(BIN)/vmrestore &: tools/debian_tool.py | $(VENV)/.installed
	$(BIN)/python tools/debian_tool.py victoria-metrics victoria-metrics vmbackup vmrestore $(BIN)

# borg, which the backup program's unit tests run: Debian's package, installed on the controller (as root,
# like the Docker engine of the test bench; tools/testbench.py).
/usr/bin/borg:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends borgbackup \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends borgbackup; }

# pytest exits 5 when it collects nothing: say so loudly instead of failing on an empty selection.
unit: $(VENV)/.installed $(BIN)/promtool $(BIN)/amtool $(BIN)/vmbackup /usr/bin/borg
	$(BIN)/pytest tests/unit || { rc=$$?; [ $$rc -eq 5 ] && echo "unit: no tests collected"; exit $$(( rc == 5 ? 0 : rc )); }

molecule: testbench
	for scenario in $(SCENARIOS); do \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test --scenario-name $$scenario || exit $$?; \
	done

constraints: $(VENV)/.installed
	{ echo "# Every package the tools resolve to, pinned (pip install -r requirements.txt -c constraints.txt)."; \
	  echo "# Regenerate after changing requirements.txt: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean: lab-down
	rm -rf $(VENV)
