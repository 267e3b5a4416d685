"""Start and stop a real ``bentoml serve`` process for the Persona service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from base.config import Settings
from base.paths import DataPaths

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "serving.service:PersonaService"
STARTUP_FAILED = "Application startup failed"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the service: which config to read, where BentoML keeps its files, and
    ``extra`` (for example the API key variable)."""
    env = dict(os.environ) | (extra or {})
    env["PERSONA_CONFIG"] = str(settings.config_path)
    env["PERSONA_DATA_DIR"] = str(settings.data_dir)
    env["BENTOML_HOME"] = str(DataPaths(settings.data_dir).bentoml_home)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    return env


def serve_command(host: str, port: int, bento: str | None = None, service: str = SERVICE) -> list[str]:
    """The ``bentoml serve`` command line (from this interpreter's environment): ``service`` from
    the source tree, or a built bento by tag (``persona:latest``)."""
    bentoml = Path(sys.executable).parent / "bentoml"
    where = [bento] if bento else [service, "--working-dir", str(PROJECT_ROOT)]
    return [str(bentoml), "serve", *where, "--host", host, "--port", str(port)]


WORKER_MODULE = "_bentoml_impl.worker"
"""The module BentoML runs each worker process as (in its command line)."""


@dataclass
class ServiceProcess:
    """A running service and how to reach it."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def worker_pids(self) -> list[int]:
        """The service's worker processes (BentoML runs them as ``_bentoml_impl.worker``), by pid."""
        out = []
        for pid in self.descendants():
            try:
                if WORKER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
            except OSError:
                pass
        return sorted(out)

    def descendants(self) -> list[int]:
        """Every live process below the service (BentoML starts its workers in process groups of their own,
        so the service's group does not reach them)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [self.process.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def _kill_all(self, below: list[int]) -> None:
        """SIGKILL ``below`` (processes in groups of their own) and the service's own process group."""
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the service and every process below it at once (a crash, as far as clients can tell)."""
        self._kill_all(self.descendants())
        self.process.wait(30)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole process group (the server stops its workers), then SIGKILL whatever lingers,
        workers included."""
        below = self.descendants()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_all(below)  # stragglers, workers in their own process groups included
        self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (so /readyz cannot be answered by another process)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_service(settings: Settings, port: int | None = None, timeout: float = 120.0,
                  env: dict[str, str] | None = None, bento: str | None = None,
                  service: str = SERVICE, workers: int | None = None, name: str = "persona") -> ServiceProcess:
    """Start ``bentoml serve`` and wait until ``/readyz`` answers 200 (raises with the log otherwise);
    ``env`` adds environment variables (the API key, overrides of ``${VAR}`` settings); ``workers``
    sets the number of worker processes of the service called ``name`` (BentoML's ``services.<name>.workers``)."""
    if workers is not None:
        import json

        env = (env or {}) | {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {name: {"workers": workers}}})}
    if settings.config_path is None:
        raise ValueError("settings have no config_path: the service reads its configuration from that file")
    host = settings.serving.host
    port = port if port is not None else (settings.serving.port or free_port())
    if not port_is_free(host, port):
        raise RuntimeError(f"port {port} on {host} is already in use (another Persona service?)")
    logs = DataPaths(settings.data_dir).logs
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"service-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(serve_command(host, port, bento, service), env=service_env(settings, env), stdout=log,
                                stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True)
    svc = ServiceProcess(proc, f"http://{host}:{port}", log_path)
    try:
        return _wait_ready(svc, timeout)
    except BaseException:
        svc.stop()
        raise


def _wait_ready(svc: ServiceProcess, timeout: float) -> ServiceProcess:
    """Poll /readyz until 200; fail early when the process dies or reports a failed start-up."""
    proc = svc.process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with code {proc.returncode}:\n{svc.log_tail()}")
        if STARTUP_FAILED in svc.log_tail(5):
            raise RuntimeError(f"service failed to start:\n{svc.log_tail()}")
        try:
            if httpx.get(f"{svc.url}/readyz", timeout=2).status_code == 200:
                return svc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"service not ready after {timeout:.0f}s:\n{svc.log_tail()}")
