"""``agentpi install-service | doctor``: the boot service, set up and checked."""

from __future__ import annotations

import argparse
from pathlib import Path


def install_service_command(args: argparse.Namespace) -> int:
    from agentpi.service.install import Installer

    installer = Installer(
        root=Path(args.root),
        start=not args.no_start,
        venv=Path(args.venv) if args.venv else None,
    )
    if args.uninstall:
        installer.uninstall()
    else:
        installer.install()
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    from agentpi.service.doctor import diagnose, render

    checks = diagnose(args.config)
    print(render(checks))
    failed = [check.name for check in checks if check.ok is False]
    print(f"\n{len(failed)} problem(s): {', '.join(failed)}" if failed else "\nall good")
    return 1 if failed else 0
