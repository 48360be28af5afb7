"""Shared fixtures: a real PostgreSQL server (Debian's `postgresql` package) started on 127.0.0.1 for the tests
that share a study between workers, one fresh database per test; and the two quick studies of the README
(`scaler search --quick`, `scaler baseline-search --quick`), each trained once for the session."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest


def _postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: Debian keeps them off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A running throwaway cluster: its address, and a restart (for the fault tests)."""

    def __init__(self, pg_ctl: list, data: Path, log: Path, port: int):
        self.pg_ctl, self.data, self.log, self.host, self.port = pg_ctl, data, log, "127.0.0.1", port

    def restart(self) -> None:
        # With its log file, or the new server would hold this call's output pipes open forever.
        subprocess.run([*self.pg_ctl, "-D", self.data, "-l", self.log, "-m", "fast", "-w", "restart"], check=True,
                       capture_output=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1; stopped and removed after the session. CI (which sets CI and
    installs the package in .ci/run) fails without one; elsewhere the tests that need it are skipped."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="scaler-pg-"))
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's postgres user
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        yield PostgresServer([*as_user, bin_dir / "pg_ctl"], data, root / "log", port)
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def new_database(server: PostgresServer) -> str:
    """A new, empty database on `server`, as an Optuna storage URL."""
    import psycopg

    name = f"study_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@{server.host}:{server.port}/{name}"


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the test server, as an Optuna storage URL."""
    return new_database(postgres_server)


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`scaler search --quick --budget-gflops 4 --json` run once for the whole session, in a folder of its own (the
    longest training of the suite: the end-to-end test and the README's commands read the same finished study)."""
    folder = tmp_path_factory.mktemp("quick")
    done = subprocess.run([sys.executable, "-m", "scaler", "search", "--quick", "--budget-gflops", "4", "--json"],
                          cwd=folder, capture_output=True, text=True, timeout=900)
    return folder, done


@pytest.fixture(scope="session")
def quick_baseline_study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`scaler baseline-search --quick --target-mflops 400 --json` run once for the whole session, in a folder of
    its own: its end-to-end test and the README's commands read the same finished study."""
    folder = tmp_path_factory.mktemp("quick-baseline")
    done = subprocess.run([sys.executable, "-m", "scaler", "baseline-search", "--quick", "--target-mflops", "400",
                           "--json"], cwd=folder, capture_output=True, text=True, timeout=900)
    return folder, done
