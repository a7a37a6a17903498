"""The sweep's searcher and where its history lives: the Optuna study of a TPE / NSGA-II / MO-TPE search.

By default the study lives with the sweep's Tune experiment, wherever its storage path is (a local
folder, a shared filesystem, an object store): Optuna keeps it in memory and Ray Tune checkpoints the
searcher with the experiment (``searcher-state-*.pkl`` beside ``experiment_state-*.json``, on every
controller step), so ``--resume`` from a fresh driver on another machine restores it with the experiment
and ``--extend`` seeds its new experiment's searcher with the previous experiment's study
(``carried_storage``). Nothing is kept beside the driver, and two sweeps of one name in two storage paths
never share a study. Searcher and experiment are saved in one checkpoint, so they cannot disagree about
which trials exist. Why not a SQLite file beside Tune's state: on an object store Optuna's RDB storage
cannot live there, and a local default (``runs/tune/``, the old one) is exactly what a driver on another
machine or in another directory does not find.

``tune.searcher_storage`` (a database URL, e.g. the PostgreSQL server the MLflow server uses) keeps the
study in that database instead, for a study to open with Optuna's own tools while the sweep runs. It
records the search space's hash (user attribute ``search_space_hash``), so another space under the same
name is refused before Ray starts, and every Optuna trial the Tune trial it serves (``tune_trial_id``),
so a trial a killed driver left RUNNING in the study is found and failed on resume (``fail_orphans``).
"""

from __future__ import annotations

import fnmatch
import tempfile
from pathlib import Path

import optuna
import pyarrow.fs
import sqlalchemy
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.optuna_search import SweepOptunaSearch
from coded_resnext.orchestration.redaction import redact_uri
from coded_resnext.orchestration.reference_control import WithReferenceControl
from coded_resnext.orchestration.samplers import make_sampler

HASH_ATTR = "search_space_hash"
TRIAL_ATTR = "tune_trial_id"
OPTUNA_ALGORITHMS = ("optuna", "nsga2", "motpe")


class SearcherStorageError(UserError):
    """The searcher's database is malformed, unreachable, or holds another search space's study."""


def storage_url(searcher_storage: str | None) -> str | None:
    """The study's database URL: ``tune.searcher_storage``; None when the study travels with the Tune
    experiment's checkpoints (the default)."""
    return searcher_storage or None


def carried_storage(experiment_path: str) -> optuna.storages.BaseStorage:
    """The Optuna storage holding the study as the Tune experiment at ``experiment_path`` (a local path or
    an object-store URI) last checkpointed it: its base searcher's newest ``searcher-state-*.pkl``, read
    through the same pyarrow filesystem Tune wrote it with and restored by Tune's own
    ``Searcher.restore_from_dir``. For a sweep of an earlier release whose study was in a database, that
    database's storage."""
    fs, path = pyarrow.fs.FileSystem.from_uri(experiment_path)
    pattern = Searcher.CKPT_FILE_TMPL.format("*")
    try:
        found = fs.get_file_info(pyarrow.fs.FileSelector(path))
    except OSError as err:
        raise SearcherStorageError(f"cannot read the sweep's Tune experiment at {experiment_path} ({err})") from None
    names = sorted(Path(info.path).name for info in found if fnmatch.fnmatch(Path(info.path).name, pattern))
    if not names:
        raise SearcherStorageError(
            f"the Tune experiment at {experiment_path} holds no searcher checkpoint ({pattern}); it did not run an "
            "Optuna searcher, so there is no study to extend"
        )
    with tempfile.TemporaryDirectory(prefix="coded-resnext-searcher-") as tmp:
        with fs.open_input_stream(f"{path}/{names[-1]}") as src:
            (Path(tmp) / names[-1]).write_bytes(src.readall())
        holder = SweepOptunaSearch()
        holder.restore_from_dir(tmp)
    return holder.study_storage


def check_url(url: str) -> None:
    """A one-line error for a URL SQLAlchemy cannot parse or has no driver for (no connection made)."""
    shown = redact_uri(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (ArgumentError, ValueError):
        raise SearcherStorageError(
            f"tune.searcher_storage {shown!r}: not a database URL; use e.g. "
            "postgresql+psycopg2://user@host:5432/optuna or sqlite:///path/optuna.db"
        ) from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise SearcherStorageError(
            f"tune.searcher_storage {shown!r}: unknown database kind {parsed.drivername!r}; "
            "use postgresql+psycopg2://, mysql+pymysql:// or sqlite:///"
        ) from None


CONNECT_TIMEOUT_S = 10  # a database that does not answer is an error after this long, not a hang


def _connect_args(url: str) -> dict:
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if backend in ("postgresql", "mysql") else {}


def _engine(url: str):
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **_connect_args(url))


def study_hash(url: str, study: str) -> str | None:
    """The search-space hash of the study ``study`` at ``url``: None when there is no such study.
    Reads only: a database without Optuna's tables (or a SQLite file not there yet) is left untouched."""
    check_url(url)
    shown = redact_uri(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = _engine(url)
    try:
        with engine.connect():
            pass
        if not sqlalchemy.inspect(engine).has_table("studies"):
            return None
    except ModuleNotFoundError as err:
        raise SearcherStorageError(f"tune.searcher_storage {shown!r}: needs the Python package {err.name!r}") from None
    except SQLAlchemyError as err:
        reason = " ".join(str(getattr(err, "orig", err)).split())[:200]
        raise SearcherStorageError(
            f"tune.searcher_storage {shown!r}: cannot connect ({reason}); check the host, port, database and "
            "credentials (PGPASSWORD), or leave it out to keep the study with the sweep's Tune experiment"
        ) from None
    finally:
        engine.dispose()
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    return str(storage.get_study_user_attrs(study_id).get(HASH_ATTR, "unknown"))


def check_study(url: str, study: str, space_hash: str, *, continuing: bool) -> None:
    """Before Ray starts: the storage is reachable, and a study of this name, if any, is this space's; a
    fresh sweep does not silently continue an old study."""
    shown = redact_uri(url)
    check_url(url)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).parent.is_dir():
        raise SearcherStorageError(f"tune.searcher_storage {shown!r}: its directory does not exist; create it first")
    found = study_hash(url, study)
    if found is not None and found != space_hash:
        raise SearcherStorageError(
            f"the Optuna study {study!r} in {shown} was made by another search space (hash {found}, this one "
            f"{space_hash}); set tune.name (or --name) for a new sweep, or restore the space it was made with"
        )
    if found is not None and not continuing:
        raise SearcherStorageError(
            f"an Optuna study {study!r} already exists in {shown}; pass --resume or --extend N to continue it, "
            "set tune.name (or --name) for a new sweep, or delete that study"
        )


def make_searcher(
    tune,
    objectives: dict[str, str],
    extension: int,
    study: str,
    space_hash: str,
    *,
    constraints=(),
    budget: tuple[str, float] | None = None,
    reference: dict | None = None,
    carried: optuna.storages.BaseStorage | None = None,
    in_memory: bool = False,
):
    """The Tune searcher of ``tune.algorithm``; Optuna's keep their study in ``tune.searcher_storage``
    (else in memory, checkpointed by Tune with the experiment; ``carried``: an extension's study from the
    previous experiment), are told ``constraints`` and treat trials ending below ``budget`` as stopped
    (``optuna_search.py``). ``reference``: one reference-control configuration handed out first and hidden
    from the search. ``in_memory``: the study in Optuna's in-memory storage whatever ``searcher_storage``
    says, nothing written (``coded-resnext simulate``)."""
    if tune.algorithm not in OPTUNA_ALGORITHMS:
        return BasicVariantGenerator(
            random_state=tune.seed + extension,
            max_concurrent=tune.max_concurrent_trials,
            points_to_evaluate=[reference] if reference else None,
        )

    url = None if in_memory else storage_url(tune.searcher_storage)
    storage = carried
    if url is not None:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True, **_connect_args(url)})
    sampler = make_sampler(
        tune.algorithm,
        seed=tune.seed + extension,
        num_samples=tune.num_samples,
        max_concurrent=tune.max_concurrent_trials,
    )
    searcher = SweepOptunaSearch(
        constraints=constraints,
        budget=budget,
        space_hash=space_hash,
        metric=list(objectives) if tune.multi_objective else tune.metric,
        mode=list(objectives.values()) if tune.multi_objective else tune.mode,
        sampler=sampler,
        study_name=study,
        storage=storage,
    )
    searcher.trial_attr = TRIAL_ATTR
    searcher.hash_attr = HASH_ATTR
    if reference:
        searcher = WithReferenceControl(searcher, reference)
    return ConcurrencyLimiter(searcher, max_concurrent=tune.max_concurrent_trials)


def fail_orphans(url: str, study: str, known_trial_ids: set[str]) -> int:
    """Mark FAIL every Optuna trial still RUNNING whose Tune trial the restored experiment does not know
    (asked for by a driver killed before its next snapshot); returns how many."""
    if study_hash(url, study) is None:
        return 0
    loaded = optuna.load_study(study_name=study, storage=url)
    failed = 0
    for trial in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(TRIAL_ATTR) not in known_trial_ids:
            loaded.tell(trial.number, state=TrialState.FAIL)
            failed += 1
    return failed
