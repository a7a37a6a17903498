"""The sweep's searcher and where its history lives: the Optuna study of a TPE / NSGA-II / MO-TPE search.

The study is named after the sweep and kept in a database (``tune.searcher_storage``): by default a SQLite
file beside the sweep's local state (``runs/tune/<name>.optuna.db``); on a cluster the PostgreSQL server
the MLflow server uses (``docs/cluster.md``), so ``--resume`` and ``--extend`` from a fresh driver on
another machine continue with every earlier trial in the sampler's view. The study records the search
space's hash (user attribute ``search_space_hash``), so another space under the same name is refused
before Ray starts, and every Optuna trial the Tune trial it serves (``tune_trial_id``), so a trial a
killed driver left RUNNING in the study is found and failed on resume (``fail_orphans``).
"""

from __future__ import annotations

from pathlib import Path

from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.redaction import redact_uri

LOCAL_STATE = Path("runs") / "tune"
HASH_ATTR = "search_space_hash"
TRIAL_ATTR = "tune_trial_id"
OPTUNA_ALGORITHMS = ("optuna", "nsga2", "motpe")


class SearcherStorageError(UserError):
    """The searcher's database is malformed, unreachable, or holds another search space's study."""


def storage_url(searcher_storage: str | None, sweep_name: str) -> str:
    """The study's database URL: ``tune.searcher_storage``, else the local SQLite file (made absolute)."""
    if searcher_storage:
        return searcher_storage
    return f"sqlite:///{(LOCAL_STATE / f'{sweep_name}.optuna.db').resolve()}"


def check_url(url: str) -> None:
    """A one-line error for a URL SQLAlchemy cannot parse or has no driver for (no connection made)."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

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


def _engine(url: str):
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    connect_args = {"connect_timeout": 10} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
    return sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)


def study_hash(url: str, study: str) -> str | None:
    """The search-space hash of the study ``study`` at ``url``: None when there is no such study.
    Reads only: a database without Optuna's tables (or a SQLite file not there yet) is left untouched."""
    import optuna
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

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
            "credentials (PGPASSWORD), or leave it out for the local file"
        ) from None
    finally:
        engine.dispose()
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    return str(storage.get_study_user_attrs(study_id).get(HASH_ATTR, "unknown"))


def check_study(url: str, study: str, space_hash: str, *, continuing: bool, given: bool) -> None:
    """Before Ray starts: the storage (``given`` by the user, else the local default) is reachable, and a
    study of this name, if any, is this space's; a fresh sweep does not silently continue an old study."""
    shown = redact_uri(url)
    check_url(url)
    if given and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).parent.is_dir():
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
    in_memory: bool = False,
):
    """The Tune searcher of ``tune.algorithm``; Optuna's keep their study in ``tune.searcher_storage``, are
    told ``constraints`` and treat trials ending below ``budget`` as stopped (``optuna_search.py``).
    ``reference``: one reference-control configuration handed out first and hidden from the search.
    ``in_memory``: the study in Optuna's in-memory storage, nothing written (``coded-resnext simulate``)."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if tune.algorithm not in OPTUNA_ALGORITHMS:
        return BasicVariantGenerator(
            random_state=tune.seed + extension,
            max_concurrent=tune.max_concurrent_trials,
            points_to_evaluate=[reference] if reference else None,
        )
    import optuna

    from coded_resnext.orchestration.optuna_search import SweepOptunaSearch
    from coded_resnext.orchestration.reference_control import WithReferenceControl
    from coded_resnext.orchestration.samplers import make_sampler

    storage = None  # in memory
    if not in_memory:
        url = storage_url(tune.searcher_storage, study)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
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
    import optuna
    from optuna.trial import TrialState

    if study_hash(url, study) is None:
        return 0
    loaded = optuna.load_study(study_name=study, storage=url)
    failed = 0
    for trial in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(TRIAL_ATTR) not in known_trial_ids:
            loaded.tell(trial.number, state=TrialState.FAIL)
            failed += 1
    return failed
