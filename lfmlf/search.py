"""Search spaces: ``search_spaces/*.yaml`` -> a picklable Optuna define-by-run function. The only module
that imports Optuna.

A space file maps parameter names to distributions::

    lr:         {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    slack:      {type: float, low: 0.1, high: 10.0, log: true}
    source_set: {type: source_set}            # categorical over the sweep's canonical sets (de+en+pt)
    reduction:  {type: categorical, choices: [mean, sum]}

A name is a training setting (``lr``, ``warmup_ratio``, ...), ``source_set``, or a hyper-parameter of the
method the space belongs to. One space per method, so conditional parameters (``slack`` only for LF-MLF)
need no special syntax.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

if TYPE_CHECKING:
    import optuna

    from lfmlf.config import SweepConfig


class SpaceError(ValueError):
    """A search-space file or mapping is wrong; the message names the file, the key and the fix."""


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical", "source_set"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Union[str, int, float, bool]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ParamSpec":
        if self.type in ("float", "int"):
            if self.low is None or self.high is None:
                raise ValueError(f"type {self.type} needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) > high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log scale needs low > 0")
        if self.type == "categorical" and not self.choices:
            raise ValueError("type categorical needs a non-empty 'choices' list")
        return self


Space = dict[str, ParamSpec]


def load_space(method: str, space: str | dict[str, Any] | None, cfg: "SweepConfig") -> Space:
    """Read and validate one method's space (a file path, an inline mapping, or None = fixed config)."""
    from lfmlf.config import TrainConfig, read_yaml
    from lfmlf.methods import METHODS

    if space is None:
        return {}
    where = str(space) if isinstance(space, str) else "inline space"
    if isinstance(space, str):
        if not Path(space).is_file():
            raise SpaceError(f"search-space file {space} does not exist. Fix: check the path (relative to the "
                             "sweep file).")
        try:
            raw = read_yaml(space)
        except ValueError as e:
            raise SpaceError(str(e)) from None
    else:
        raw = space
    valid = set(TrainConfig.model_fields) | {"source_set"} | set(METHODS[method].param_names())
    valid -= {"device", "seed", "max_steps", "eval_every"}  # the budget and evaluation grid stay fixed
    out: Space = {}
    for name, spec in raw.items():
        if name not in valid:
            close = difflib.get_close_matches(name, sorted(valid), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"searchable here: {', '.join(sorted(valid))}."
            raise SpaceError(f"{where}: unknown parameter '{name}' for method '{method}'. Fix: {hint}")
        try:
            out[name] = ParamSpec.model_validate(spec)
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'value'}: {x['msg']}" for x in e.errors())
            raise SpaceError(f"{where}: parameter '{name}': {msg}. Fix: see search_spaces/README.md.") from None
    return out


class DefineByRun:
    """Picklable define-by-run function for ``OptunaSearch(space=...)``: suggests every parameter of one
    method's space and returns the constants (the method name) that Tune adds to the trial config."""

    def __init__(self, method: str, space: Space, source_sets: list[str]) -> None:
        self.method = method
        self.space = {k: v.model_dump() for k, v in space.items()}
        self.source_sets = list(source_sets)

    def __call__(self, trial: "optuna.Trial") -> dict[str, Any]:
        for name, s in self.space.items():
            if s["type"] == "float":
                trial.suggest_float(name, s["low"], s["high"], log=s["log"], step=s["step"])
            elif s["type"] == "int":
                step = int(s["step"] or 1)
                trial.suggest_int(name, int(s["low"]), int(s["high"]), log=s["log"], step=step)
            elif s["type"] == "categorical":
                trial.suggest_categorical(name, s["choices"])
            else:
                trial.suggest_categorical(name, self.source_sets)
        return {"method": self.method}


def make_sampler(seed: int, n_startup_trials: int) -> "optuna.samplers.BaseSampler":
    """Multivariate, grouped TPE with the constant liar (parallel trials do not all pick the same point)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                      group=True, constant_liar=True)


def search_metric(cfg: "SweepConfig") -> str:
    """The metric the studies optimise and ``lfmlf best`` selects on (``{metric}`` = the task's metric)."""
    from lfmlf.tasks import TASKS

    return cfg.search.metric.format(metric=TASKS[cfg.task.name].metric)


def study_storage_url(tracking_uri: str, run_dir: Path) -> str:
    """Where a sweep's Optuna studies persist: ``optuna.db`` next to a SQLite MLflow store (so one folder
    holds both, and ``optuna-dashboard sqlite:///.../optuna.db`` opens every sweep's studies), else in the
    sweep's run folder (an MLflow server)."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri[len("sqlite:///"):]).parent
    else:
        folder = run_dir
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def study_name(sweep: str, method: str, sweep_run_id: str) -> str:
    """One study per sweep and method; the MLflow sweep run id keeps two sweeps of the same name apart."""
    return f"{sweep}.{method}.{sweep_run_id[:8]}"


def study_storage(url: str) -> "optuna.storages.BaseStorage":
    """The RDB storage at ``url`` (picklable: Tune keeps the searcher, and this with it, in its experiment
    state, so a resumed sweep writes to the same study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(url)


def trial_finished(study: "optuna.Study", trial: "optuna.Trial") -> bool:
    """Whether the persistent study already holds ``trial`` as finished (COMPLETE, PRUNED or FAIL)."""
    return study._storage.get_trial(trial._trial_id).state.is_finished()  # noqa: SLF001 (Optuna's own ids)


def fail_orphaned_trials(url: str, name: str) -> int:
    """Mark the study's trials still RUNNING as FAIL; called when every Tune trial of the study has ended,
    so these are trials whose process was killed (SIGKILL) before it could report. Returns how many."""
    import optuna
    from optuna.trial import TrialState

    storage = study_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for t in orphans:
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # noqa: SLF001 (Optuna's own id)
    return len(orphans)


def study_summary(url: str, name: str) -> dict[str, Any]:
    """Trial counts by state and fANOVA parameter importances (empty when fewer than 2 complete trials)."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=name, storage=study_storage(url))
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    importances: dict[str, float] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        try:
            importances = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError) as e:   # e.g. a parameter with a single value in every trial
            importances = {"(not computed)": float("nan")}
            logging.getLogger(__name__).warning("parameter importance of %s not computed: %s", name, e)
    return {"counts": counts, "importances": importances, "n_trials": len(study.trials)}
