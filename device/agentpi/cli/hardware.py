"""The commands that look at the hardware: leds, models, devices."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from agentpi.config.document import ConfigError, load_config
from agentpi.config.profiles import with_profile
from agentpi.device.assembly import build_leds
from agentpi.leds.settings import LedSettings
from agentpi.settings.typed import build_dataclass, load_toml
from agentpi.states import DeviceState
from agentpi.wake.listener import open_models
from agentpi.wake.micro import NAME as MICRO
from agentpi.wake.micro import micro_model_dirs
from agentpi.wake.models import download, model_dirs, user_models_dir
from agentpi.wake.settings import MICRO_SUFFIX, MODEL_SUFFIXES, WakeConfig


def _led_settings(config_path: str | None, profile: str | None) -> LedSettings:
    data = with_profile(load_toml(config_path) if config_path else {}, profile)
    return build_dataclass(LedSettings, data.get("leds", {}), "leds")


def leds_command(args: argparse.Namespace) -> int:
    """Show each state's pattern for a while, with a made-up voice for vad and envelope."""
    settings = _led_settings(args.config, args.profile)
    if settings.type == "none":
        raise ConfigError("no LEDs configured: give --profile NAME or a config with [leds]")
    voice = {"level": 0.0}
    controller = build_leds(settings, None)
    assert controller is not None
    controller.level_source = lambda: voice["level"]
    controller.start()
    try:
        for state in DeviceState:
            pattern = controller.animator.patterns[state]
            print(f"{state.value:14} {pattern.effect:9} {pattern.color}", flush=True)
            controller.animator.set_state(state, time.monotonic())
            end = time.monotonic() + args.seconds
            while (now := time.monotonic()) < end:
                voice["level"] = 0.5 + 0.5 * math.sin(now * 5)
                controller.animator.set_vad(voice["level"], now)
                time.sleep(0.02)
    finally:
        controller.stop()
    return 0


def models_command(args: argparse.Namespace) -> int:
    wake = load_config(args.config).wake if args.config else WakeConfig()
    if args.action == "download":
        target = Path(args.dir) if args.dir else user_models_dir()
        for path in download(list(args.names), target):
            print(path)
        return 0
    print("looking in:")
    micro = wake.engine == MICRO
    dirs = micro_model_dirs(wake.models_dir) if micro else model_dirs(wake.models_dir)
    suffixes = (MICRO_SUFFIX,) if micro else MODEL_SUFFIXES
    for directory in dirs:
        found = sorted(p.name for p in directory.glob("*") if p.suffix in suffixes)
        print(f"  {directory}: {', '.join(found) if found else '(none)'}")
    paths, engine = open_models(wake)
    for name, path in paths.items():
        print(f"wake model {name}: {path}")
    print(f"engine: {engine.name}")
    return 0


def devices_command(args: argparse.Namespace) -> int:
    from agentpi.audio.portaudio import devices, supported_formats

    found = devices()
    if not found:
        print("no sound devices found (is the USB microphone plugged in? is ALSA set up?)")
        return 1
    for kind in ("input", "output"):
        print(f"{kind}s:")
        for device in found:
            channels = device.channels(kind)
            if channels == 0:
                continue
            formats = supported_formats(device, kind)
            rates = sorted({rate for rate, _ in formats})
            mono = any(ch == 1 for _, ch in formats)
            opens = ", ".join(str(rate) for rate in rates) if rates else "nothing (busy?)"
            print(
                f"  {device.index:3}  {device.name}  ({channels} ch max, "
                f"{'mono' if mono else 'stereo only'}; opens at {opens} Hz)"
            )
    print('use the index, the name or a piece of it: [audio] input = "USB"')
    return 0
