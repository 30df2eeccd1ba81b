# agentpi: `make demo` runs a whole conversation, `make test` runs the tests.
# Both set everything up first on a fresh Debian / Raspberry Pi OS machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := portaudio19-dev python3-dev python3-venv gcc espeak-ng systemd
# On a Raspberry Pi, gpiozero drives the pins through lgpio, which ships as a Debian package
# (PyPI has no aarch64 wheel), so the venv sees the system site-packages there.
ON_PI := $(shell grep -qs "Raspberry Pi" /proc/device-tree/model && echo yes)
ifeq ($(ON_PI),yes)
APT_PACKAGES += python3-lgpio python3-spidev
VENV_FLAGS := --system-site-packages
endif

.PHONY: demo test lint bench wiring system-deps clean

demo: $(STAMP)
	$(BIN)/agentpi demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check device tests benchmarks hardware tools
	$(BIN)/ruff format --check device tests benchmarks hardware tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/check_wheels.py

# All of it, or some: make bench BENCH=clients (clients, protocol, soundcard, soak).
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

# Wiring diagrams and hardware/README.md, from hardware/profiles/*.toml.
wiring: $(STAMP)
	$(BIN)/python hardware/draw_wiring.py

# Debian packages: PyAudio's build needs, espeak-ng for the tests' speech; only missing ones install.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
