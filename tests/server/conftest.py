"""Fixtures for the `samepage serve` tests: a server on a free port, with
its own sessions directory, started and stopped (or SIGKILLed) by the test."""
import os
import re
import signal
import subprocess
import time

import pytest
import requests

EXE = os.environ.get("SAMEPAGE_EXE", "samepage")
MODEL = os.environ.get("SP_TEST_MODEL", "")
CTX = 1024
# SP_SERVE_BACKEND=cuda: the same tests on the GPU (scripts/device-serve-check.sh runs test_load.py so)
BACKEND = os.environ.get("SP_SERVE_BACKEND", "cpu")


class Server:
    """One `samepage serve` process; its stderr goes to a file in tmp."""

    def __init__(self, tmp, sessions=None, *extra):
        self.tmp, self.sessions, self.extra = tmp, sessions, list(extra)
        self.proc, self.url = None, None
        self.wrap = []  # a command the server runs under (test_faults.py: unshare and a tmpfs)

    def start(self):
        log = self.tmp / f"serve-{time.monotonic_ns()}.log"
        args = [EXE, "serve", "--model", MODEL, "--port", "0", "--backend", BACKEND, "--ctx", str(CTX)]
        if self.sessions:
            args += ["--sessions", str(self.sessions)]
        self.log = log
        self.proc = subprocess.Popen(self.wrap + args + self.extra, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"listening on (http://[\d.]+:\d+)", log.read_text())
            if m:
                self.url = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError("server did not start: " + log.read_text())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
            assert rc == 0, self.log.read_text()

    def client(self, api_key="none"):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120)

    def metric(self, name):
        text = requests.get(self.url + "/metrics", timeout=30).text
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(sessions=None, *extra, wrap=()):
        s = Server(tmp_path, sessions, *extra)
        s.wrap = list(wrap)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        if s.proc and s.proc.poll() is None:
            s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("srv"), None).start()
    yield s
    s.stop()


def model_id():
    """The id the server lists: the file's name without .gguf."""
    name = os.path.basename(MODEL)
    return name[:-5] if name.endswith(".gguf") else name
