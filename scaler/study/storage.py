"""Where studies live: Optuna storage URLs opened with one clear error, and the studies a folder holds.

A study is stored in any Optuna storage: by default one SQLite file per study, `studies/<name>.db` under the
current directory; a journal file (`*.log`) for many worker processes on one machine (SQLite locks under
parallel writers); PostgreSQL (or MySQL) for workers on several machines. Relational storages record a
heartbeat of every running trial, so a trial whose worker died on another machine is found (no heartbeat for
`GRACE_SECONDS`) and trained again; on this machine a dead worker is found at once by its process id.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy.exc

from scaler.errors import ScalerError, StorageFailed
from scaler.study import STUDIES_FOLDER

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
CONNECT_SECONDS = 10
OUTAGE_SECONDS = 120  # how long a worker waits for a storage that stopped answering
RELATIONAL = ("sqlite:", "postgresql", "mysql")
JOURNAL_SUFFIXES = (".log", ".journal")


def default_storage(study_name: str) -> str:
    """sqlite:///studies/<study-name>.db under the current directory."""
    return f"sqlite:///{STUDIES_FOLDER / study_name}.db"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def _file_of(url: str) -> Path | None:
    """The file of a SQLite or journal storage; None for a server."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.endswith(JOURNAL_SUFFIXES) and not url.startswith(RELATIONAL):
        return Path(url)
    return None


def storage_folder(url: str) -> Path:
    """The folder a file storage lives in (results are written beside it); the current directory otherwise."""
    path = _file_of(url)
    return Path(".") if path is None else path.parent


def open_storage(url: str, create: bool = False) -> optuna.storages.BaseStorage:
    """Open any Optuna storage URL, or a journal file path. Without `create`, a file that does not exist is an
    error rather than a new, empty storage (reading a study must not make one)."""
    url = str(url)
    if not url.startswith(RELATIONAL) and not url.endswith(JOURNAL_SUFFIXES):
        raise ScalerError(f"storage: {url!r} is not a storage URL (sqlite:///FILE.db, postgresql://..., or a "
                          f"journal file ending in .log)")
    path = _file_of(url)
    if path is not None and not create and not path.exists():
        raise ScalerError(f"storage: {path} does not exist")
    if path is not None and create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ScalerError(f"storage: cannot make {path.parent}: {error.strerror}") from None
    try:
        if url.startswith(RELATIONAL):
            engine = None
            if url.startswith("postgresql"):
                # psycopg 3 (scaler[postgresql]) whatever SQLAlchemy's default driver; a server that does not
                # answer is an error after CONNECT_SECONDS, not a hang.
                url = url.replace("postgresql://", "postgresql+psycopg://", 1)
                engine = {"connect_args": {"connect_timeout": CONNECT_SECONDS}}
            return _relational(url, engine)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    except Exception as error:  # noqa: BLE001 -- SQLAlchemy and the drivers raise many kinds; one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = ""
        if "import" in first.lower() or "no module" in first.lower():
            hint = (" (pip install 'scaler[postgresql]')" if url.startswith("postgresql") else
                    " (scaler installs drivers for SQLite and PostgreSQL only; for MySQL install one, e.g. pip install"
                    " pymysql, and name it: mysql+pymysql://...)")
        raise ScalerError(f"storage: cannot open {url}: {first}{hint}") from None


def _relational(url: str, engine: dict | None, attempts: int = 5) -> optuna.storages.RDBStorage:
    """An RDBStorage with heartbeats. Workers that start at once on a fresh database all create its tables, and
    all but one collide (a unique or duplicate-table violation): those wait a moment and open what the first
    made."""
    def make() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                                              grace_period=GRACE_SECONDS)

    for attempt in range(attempts - 1):
        try:
            return make()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.5 * (attempt + 1))
    return make()


def load_study(study_name: str, storage: str) -> optuna.Study:
    """An existing study; one that is not there is a ScalerError naming the storage."""
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise ScalerError(f"study {study_name!r} not found in {storage}") from None


def local_storages(folder: Path = STUDIES_FOLDER) -> list[str]:
    """The storages in a folder: every `*.db` (SQLite) and `*.log` (journal) file, sorted by name."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix in (".db", *JOURNAL_SUFFIXES) and p.is_file())
    return [f"sqlite:///{p}" if p.suffix == ".db" else str(p) for p in files]


def find_study(study_name: str, storage: str | None) -> str:
    """The storage that holds `study_name`: the one given, else studies/<name>.db or .log, else any storage in
    studies/ that holds a study of that name."""
    if storage is not None:
        return storage
    candidates = [default_storage(study_name), str(STUDIES_FOLDER / f"{study_name}.log")]
    candidates += [url for url in local_storages() if url not in candidates]
    for url in candidates:
        try:
            names = optuna.get_all_study_names(open_storage(url))
        except ScalerError:
            continue
        if study_name in names:
            return url
    raise ScalerError(f"study {study_name!r} not found in {STUDIES_FOLDER}/ (give --storage URL if it is elsewhere)")


def is_storage_failure(error: BaseException) -> bool:
    """Whether `error`, or an error it arose from, is the database failing (connection lost, server restarting).
    Optuna sometimes loses the original in a follow-on error of its own, so the whole chain is searched."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DBAPIError)):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def storage_failures() -> Iterator[None]:
    """Inside: a storage that fails (Optuna's StorageInternalError, a lost connection) is a StorageFailed, which
    says that what finished is kept; any other error passes through unchanged."""
    try:
        yield
    except ScalerError:  # said already (a storage that cannot be opened is the user's to fix: exit status 2)
        raise
    except Exception as error:  # noqa: BLE001 -- only storage failures are converted
        if not is_storage_failure(error):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageFailed(first) from None


def ride_out(error: Exception, since: float | None) -> float:
    """Handle `error` from a storage operation: anything but a storage failure is raised again; a storage
    failure waits a second and returns when the outage began (`since`, or now), until it has lasted
    OUTAGE_SECONDS: then StorageFailed."""
    if not is_storage_failure(error):
        raise error
    since = since or time.monotonic()
    if time.monotonic() - since > OUTAGE_SECONDS:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageFailed(f"the storage has not answered for {OUTAGE_SECONDS} s: {first}") from None
    time.sleep(1)
    return since



def study_kind(study: optuna.Study) -> str:
    """What kind of search made a study: "baseline" (scaler baseline-search) or "compound" (scaler search, and
    any study that does not say)."""
    return "baseline" if study.user_attrs.get("kind") == "baseline" else "compound"
