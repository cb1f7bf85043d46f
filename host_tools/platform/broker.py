"""A local mosquitto (Debian package) for the tests and the demo.

``Mosquitto()`` starts ``mosquitto`` bound to 127.0.0.1 on a free port (never
another interface), anonymous, no persistence file; ``ensure_mosquitto()``
installs the Debian package with apt-get when it is missing (as root; the
same pattern as ``host_tools.firmware.ensure_toolchain``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def mosquitto_bin() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def ensure_mosquitto() -> str:
    """Path of the mosquitto binary; installs the Debian package if missing."""
    exe = mosquitto_bin()
    if exe:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BrokerError("mosquitto is not installed: apt-get install mosquitto")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "mosquitto"]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise BrokerError("apt-get install mosquitto failed")
    exe = mosquitto_bin()
    if not exe:
        raise BrokerError("mosquitto still missing after apt-get install")
    return exe


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Mosquitto:
    """``with Mosquitto() as b: b.host, b.port``"""

    def __init__(self, port: int | None = None, log: Path | None = None):
        self.exe = ensure_mosquitto()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosq"))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "listener %d 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n" % self.port)
        self.log_path = log or (self.dir / "mosquitto.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise BrokerError("mosquitto did not start: %s" % self.log_path.read_text()[-500:])
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return "mqtt://%s:%d" % (self.host, self.port)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
