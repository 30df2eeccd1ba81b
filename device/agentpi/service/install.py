"""``agentpi install-service``: the boot service, set up in one idempotent command.

Each step says what it did (or that it found it done already), so a second run changes nothing
and says so. ``--root DIR`` stages the files under DIR instead of / and touches neither users nor
systemd: what packaging and the tests use.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentpi.config.document import ConfigError
from agentpi.settings.credentials import CREDENTIALS
from agentpi.system.atomic_file import write_atomically

SERVICE_USER = "agentpi"
GROUPS = ("audio", "gpio", "spi")
UNIT = "agentpi.service"
DATA = Path(__file__).resolve().parents[1] / "data"


UNIT_PATH = re.compile(r"/[A-Za-z0-9._+/-]+")


def check_unit_path(executable: Path) -> None:
    """A path written into ``ExecStart=`` as it is: systemd splits it at a space (``/opt/agent pi``
    runs ``/opt/agent``), a newline starts another setting, ``%`` is one of its specifiers."""
    if not UNIT_PATH.fullmatch(str(executable)):
        raise ConfigError(
            f"install-service: {str(executable)!r} cannot go into the unit's ExecStart as it is "
            "(spaces, quotes, %, $ or control characters); choose a path of letters, digits and "
            "._+-/ (e.g. --venv /opt/agentpi)"
        )


@dataclass
class Installer:
    root: Path = Path("/")
    start: bool = True
    venv: Path | None = None
    """Install into this venv (made if missing); None: run the agentpi that runs this command."""
    run: Callable[[list[str]], None] = field(default=lambda argv: _run(argv))
    said: list[str] = field(default_factory=list)

    @property
    def staged(self) -> bool:
        return self.root != Path("/")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def say(self, line: str) -> None:
        self.said.append(line)
        print(line, flush=True)

    def install(self) -> None:
        if self.venv is not None:
            check_unit_path(Path(self.venv) / "bin" / "agentpi")  # before anything is changed
        self._check_root()
        self._user()
        executable = self._app()
        self._config()
        self._unit(executable)
        self._systemd(["daemon-reload"], ["enable", "--now" if self.start else "--quiet", UNIT])

    def uninstall(self) -> None:
        self._check_root()
        unit = self.path(f"/etc/systemd/system/{UNIT}")
        if not self.staged and shutil.which("systemctl"):
            self.run(["systemctl", "disable", "--now", UNIT])
        if unit.exists():
            unit.unlink()
            self.say(f"removed {unit}")
        else:
            self.say(f"{unit}: not installed")
        if not self.staged and shutil.which("systemctl"):
            self.run(["systemctl", "daemon-reload"])
        self.say(f"kept {self.path('/etc/agentpi')} (your config and key) and the user")

    def _check_root(self) -> None:
        if not self.staged and os.geteuid() != 0:
            raise ConfigError("install-service needs root: run it with sudo")

    def _user(self) -> None:
        if self.staged:
            self.say(f"user {SERVICE_USER}: not created (staging under {self.root})")
            return
        try:
            pwd.getpwnam(SERVICE_USER)
            self.say(f"user {SERVICE_USER}: exists")
        except KeyError:
            self.run(
                ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/agentpi",
                 "--shell", "/usr/sbin/nologin", SERVICE_USER]
            )  # fmt: skip
            self.say(f"user {SERVICE_USER}: created")
        have = [g for g in GROUPS if _group_exists(g)]
        if have:
            self.run(["usermod", "--append", "--groups", ",".join(have), SERVICE_USER])
            self.say(f"user {SERVICE_USER}: in groups {', '.join(have)}")

    def _app(self) -> Path:
        if self.venv is None:
            executable = Path(sys.argv[0]).resolve()
            if executable.name != "agentpi":
                executable = Path(sys.executable).resolve().parent / "agentpi"
            if str(executable).startswith(("/home/", "/root/")):
                self.say(
                    f"note: {executable} is under a home directory, which the service may not "
                    "read (ProtectHome); use --venv /opt/agentpi for a system-wide install"
                )
            return executable
        venv = self.path(str(self.venv))
        if not (venv / "bin" / "python").exists():
            self.run([sys.executable, "-m", "venv", str(venv)])
            self.say(f"made {venv}")
        source = DATA.parents[2]  # the checkout, when installed from one
        target = str(source) if (source / "pyproject.toml").exists() else "agentpi"
        self.run([str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", target])
        self.say(f"installed agentpi into {venv}")
        return Path(str(self.venv)) / "bin" / "agentpi"

    def _config(self) -> None:
        folder = self.path("/etc/agentpi")
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.toml"
        if config.exists():
            self.say(f"{config}: kept as it is")
        else:
            write_atomically(config, (DATA / "config-template.toml").read_text(), 0o640)
            self.say(f"{config}: written from the template; set agent_id in it")
        self._own(config, 0o640)
        # systemd will not start the unit if a credential file is missing: an empty one means
        # "not used"
        for spec in CREDENTIALS:
            secret = folder / spec.file
            if secret.exists() and secret.read_text().strip():
                self.say(f"{secret}: present")
            elif os.environ.get(spec.variable):
                write_atomically(secret, os.environ[spec.variable].strip() + "\n", 0o600)
                self.say(f"{secret}: written from ${spec.variable} (mode 0600)")
            else:
                write_atomically(secret, "", 0o600)
                self.say(f"{secret}: empty (needed only for {spec.use}; mode 0600)")
            os.chmod(secret, 0o600)

    def _own(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)
        if not self.staged and _group_exists(SERVICE_USER):
            os.chown(path, 0, grp.getgrnam(SERVICE_USER).gr_gid)

    def _unit(self, executable: Path) -> None:
        check_unit_path(executable)
        text = (DATA / UNIT).read_text()
        text = text.replace("ExecStart=/usr/local/bin/agentpi", f"ExecStart={executable}")
        # a group the machine lacks (plain Debian has no gpio or spi) would stop the unit's start
        groups = " ".join(g for g in GROUPS if _group_exists(g))
        text = text.replace(
            f"SupplementaryGroups={' '.join(GROUPS)}\n",
            f"SupplementaryGroups={groups}\n" if groups else "",
        )
        unit = self.path(f"/etc/systemd/system/{UNIT}")
        unit.parent.mkdir(parents=True, exist_ok=True)
        if unit.exists() and unit.read_text() == text:
            self.say(f"{unit}: up to date")
        else:
            write_atomically(unit, text, 0o644)
            self.say(f"{unit}: installed (ExecStart={executable})")

    def _systemd(self, *commands: list[str]) -> None:
        if self.staged:
            self.say("systemd: left alone (staging)")
            return
        if not Path("/run/systemd/system").is_dir():
            self.say(
                "systemd: not running here; enable it later with: systemctl enable --now agentpi"
            )
            return
        for command in commands:
            self.run(["systemctl", *command])
        self.say("systemd: agentpi enabled" + (" and started" if self.start else ""))


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.returncode}")
