"""A throwaway PostgreSQL cluster from the local binaries, for tests that stop or crash the database."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

# initdb and postgres refuse to run as root; under root the cluster runs as this account.
SERVICE_USER = "postgres"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl (or $ATP_TEST_PG_BINDIR)."""
    candidates = [os.environ["ATP_TEST_PG_BINDIR"]] if os.environ.get("ATP_TEST_PG_BINDIR") else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """One private cluster: trust auth on 127.0.0.1:<free port>, its socket in its own directory.

    fsync and full_page_writes are off: they only matter when the OS crashes, which a test never survives
    anyway. synchronous_commit stays on: without it a commit is acknowledged before its WAL is written, and
    `pg_ctl stop -m immediate` (a crash of PostgreSQL, not of the OS) would lose acknowledged transactions.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        # Not pytest's tmp_path: its parents are root-only, and the cluster may run as another user.
        self.root = Path(tempfile.mkdtemp(prefix="atp-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_file = self.root / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVICE_USER)
            self._as_user = ["runuser", "-u", SERVICE_USER, "--"]
        self.socket_dir.mkdir()
        if self._as_user:
            shutil.chown(self.socket_dir, SERVICE_USER)
        self.running = False

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [*self._as_user, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server log, for failure messages."""
        try:
            return "\n" + "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        """initdb with trust authentication and the `postgres` superuser."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and return once it accepts connections (pg_ctl -w)."""
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=60",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            "30",
            "-o",
            options,
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients and shuts down cleanly, `immediate` is a crash."""
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30")
        self.running = False

    def dsn(self, database: str = "postgres") -> str:
        """A TCP DSN to `database` as the superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        """Stop the server if it runs (as a crash: nothing in it is kept) and delete its files."""
        try:
            if self.running or (self.data_dir / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
