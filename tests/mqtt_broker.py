"""A real Mosquitto broker for the tests: a free loopback port, a password file, and a TLS
listener with a certificate authority of its own (Debian's mosquitto and openssl)."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "device"
PASSWORD = "s3cret-for-tests"


PORT_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


_CERTIFICATES: dict[str, Path] = {}


def certificates() -> Path:
    """A CA and a server certificate for localhost, made once per test process (EC keys: cheap,
    so the tests running beside it keep their real-time pace)."""
    if "folder" not in _CERTIFICATES:
        folder = Path(tempfile.mkdtemp(prefix="agentpi-mqtt-ca-"))
        atexit.register(shutil.rmtree, folder, True)
        make_certificates(folder)
        _CERTIFICATES["folder"] = folder
    return _CERTIFICATES["folder"]


def make_certificates(folder: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_name = "/CN=agentpi test CA"
    # the extensions Python 3.13's strict verification insists on (key usage above all)
    ca_extensions = (
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    openssl("req", "-x509", *ec, *ca_extensions, "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", ca_name)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    )


class Broker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.tls_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.certificates = certificates()
        passwords = folder / "passwords"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(passwords), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        passwords.chmod(0o600)
        self.started = False
        self._write_config()

    def _write_config(self) -> None:
        (self.folder / "mosquitto.conf").write_text(
            "user root\n"
            "persistence false\n"
            "allow_anonymous false\n"
            f"password_file {self.folder / 'passwords'}\n"
            "max_packet_size 1048576\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n"
            f"cafile {self.certificates / 'ca.crt'}\n"
            f"certfile {self.certificates / 'server.crt'}\n"
            f"keyfile {self.certificates / 'server.key'}\n"
        )

    @property
    def ca_file(self) -> Path:
        return self.certificates / "ca.crt"

    def start(self) -> None:
        """Start the broker. The first time, ports another test took between ``free_port``
        and the broker's bind are picked again (up to ``PORT_ATTEMPTS`` times); a restart keeps
        its ports, as clients come back to them."""
        for _ in range(1 if self.started else PORT_ATTEMPTS):
            if self._started_on_its_ports():
                self.started = True
                return
            log = (self.folder / "mosquitto.log").read_text()
            if "Address already in use" not in log:
                break
            self.port, self.tls_port = free_port(), free_port()
            self._write_config()
        raise RuntimeError(
            f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()}"
        )

    def _started_on_its_ports(self) -> bool:
        (self.folder / "mosquitto.log").write_bytes(b"")
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 (the broker keeps it)
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.folder / "mosquitto.conf")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        # "running" is logged once every listener is bound: a connect alone could reach
        # whoever else holds the port
        while time.monotonic() < deadline and self.process.poll() is None:
            if " running" in (self.folder / "mosquitto.log").read_text():
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return True
            time.sleep(0.05)
        self.kill()
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
