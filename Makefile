# agentpi: `make demo` runs a whole conversation, `make test` runs the tests.
# Both set everything up first on a fresh Debian / Raspberry Pi OS machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := portaudio19-dev python3-dev python3-venv gcc espeak-ng systemd
# the tests' MQTT broker (its service is left disabled if the tests installed it), and libfaketime
# for a clock that is not set yet
TEST_APT_PACKAGES := mosquitto openssl faketime iproute2
# On a Raspberry Pi, gpiozero drives the pins through lgpio, which ships as a Debian package
# (PyPI has no aarch64 wheel), so the venv sees the system site-packages there.
ON_PI := $(shell grep -qs "Raspberry Pi" /proc/device-tree/model && echo yes)
GPIO_PACKAGES := python3-lgpio python3-spidev
ifeq ($(ON_PI),yes)
VENV_FLAGS := --system-site-packages
endif
# The wake-word engines and the echo canceller ship 64-bit wheels only (x86_64, aarch64).
MACHINE := $(shell uname -m)

.PHONY: demo test test-deps test-stress lint bench wiring system-deps supported-machine clean \
        arm64-check \
        trixie-check ha-check ha-here

demo: $(STAMP)
	$(BIN)/agentpi demo

test: $(STAMP) test-deps
	$(BIN)/python -m pytest

test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	  case "$$missing" in *mosquitto*) \
	    $(SUDO) systemctl disable --now mosquitto >/dev/null 2>&1 || true;; esac; fi

# The suite three times in a row with one core kept busy, as on a board doing other work.
test-stress: $(STAMP) test-deps
	@$(PYTHON) -c "while True: pass" & hog=$$!; trap "kill $$hog" EXIT; \
	for round in 1 2 3; do echo "== round $$round of 3, one core busy"; \
	  $(BIN)/python -m pytest -q || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check device tests benchmarks hardware tools
	$(BIN)/ruff format --check device tests benchmarks hardware tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/check_wheels.py

# The Pi's own platform without a Pi: arm64 bookworm through qemu-user (slow: about 40 min the
# first time, the root then cached), `make demo` and the tests that do not depend on real-time
# speed. And Python 3.13 on trixie, natively: the whole suite. See tools/debian_root.sh.
arm64-check:
	$(SUDO) tools/debian_root.sh bookworm arm64 \
	  'make demo && .venv/bin/python -m pytest -q -m "not realtime and not heavy" -n 2 --timeout 900'

trixie-check:
	$(SUDO) tools/debian_root.sh trixie amd64 'make test'

# The device against Home Assistant core itself (its demo lights and locks, its MQTT integration):
# Home Assistant needs Python 3.13, so it runs in the trixie root (about 4 min the first time).
ha-check:
	$(SUDO) tools/debian_root.sh trixie amd64 'make ha-here'

HA_VERSION ?= 2026.2.3
HA_VENV ?= /opt/ha
# what the demo integration's camera and the auth module import, installed once up front
HA_EXTRAS := numpy av PyTurboJPEG pyotp PyQRCode
ha-here: $(STAMP) test-deps
	@[ -x $(HA_VENV)/bin/hass ] || { $(PYTHON) -m venv $(HA_VENV) && \
	  $(HA_VENV)/bin/pip install -q "homeassistant==$(HA_VERSION)" $(HA_EXTRAS); }
	AGENTPI_HASS=$(HA_VENV)/bin/hass $(BIN)/python -m pytest -q -n 1 --timeout 900 \
	  tests/test_ha_real.py

# All of it, or some: make bench BENCH=clients (clients, idle, deflate, protocol, soundcard, soak,
# phrase_end, engines; board: one line from this board for the README's table).
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

# Wiring diagrams and hardware/README.md, from hardware/profiles/*.toml.
wiring: $(STAMP)
	$(BIN)/python hardware/draw_wiring.py

supported-machine:
	@case "$(MACHINE)" in x86_64|aarch64) ;; \
	  *) echo "agentpi needs a 64-bit system (x86_64 or aarch64); this one is $(MACHINE)." \
	     "On a Raspberry Pi 3, 4, 5 or Zero 2 W, flash Raspberry Pi OS (64-bit)."; exit 1;; esac

# Debian packages: PyAudio's build needs, espeak-ng for the tests' speech; only missing ones install.
# On a Pi, the GPIO libraries too: they are in the Raspberry Pi archive (Raspberry Pi OS has it),
# not in plain Debian's, where the device then runs without GPIO and says so.
system-deps: supported-machine
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi
	@if [ "$(ON_PI)" = yes ]; then \
	  $(SUDO) apt-get install -y -qq $(GPIO_PACKAGES) >/dev/null 2>&1 || echo \
	  "note: $(GPIO_PACKAGES) are not in this system's package archive (plain Debian?): the" \
	  "LEDs and the button need them; add the Raspberry Pi archive or use Raspberry Pi OS."; fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
