"""Search spaces: ``search_spaces/*.yaml`` -> Optuna distributions -> a picklable define-by-run function.
The only module that imports Optuna (besides the Tune searcher that drives the studies, lfmlf.sweep).

A space file maps parameter names to distributions::

    lr:         {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    slack:      {type: float, low: 0.1, high: 10.0, log: true}
    source_set: {type: source_set}            # one of the sweep's canonical sets (de+en+pt)
    reduction:  {type: categorical, choices: [mean, sum]}

A name is a training setting (``lr``, ``warmup_ratio``, ...), ``source_set``, or a hyper-parameter of the
method the space belongs to. One space per method, so conditional parameters (``slack`` only for LF-MLF)
need no special syntax. ``search_spaces/README.md`` describes the format.

``source_set`` is searched in one of two encodings (the entry's ``encoding``, default
:data:`DEFAULT_SOURCE_SET_ENCODING`): ``categorical``, one Optuna categorical over the canonical set strings
(TPE then treats ``de+en`` and ``de+en+es`` as unrelated values), or ``inclusion``, one boolean
``use_<lang>`` per pool language outside ``must_include`` (:class:`InclusionEncoding`), so a score learnt
for a language carries over to every set that holds it. Either way the trial's configuration (Tune, MLflow)
holds the canonical ``source_set`` string; only the study's own parameters differ, so a persistent study
keeps the encoding it was created with (:func:`check_study_encoding`).

A space is parsed once into :class:`ParamSpec` objects (:func:`load_space`) and turned into Optuna
distributions once (:func:`distributions`); the define-by-run function and the pre-flight check
(:mod:`lfmlf.checks`, which builds each method's parameter model at the bounds of every range) read those.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import warnings
from collections.abc import Collection, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import optuna
from filelock import FileLock
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from lfmlf.config import SweepConfig, TrainConfig, read_yaml
from lfmlf.errors import UserError
from lfmlf.methods import METHODS
from lfmlf.tasks import TASKS

#: Training settings a space may not search: the budget and the evaluation grid stay fixed per sweep.
FIXED_TRAIN = frozenset({"device", "seed", "max_steps", "eval_every", "average_last"})


class SpaceError(UserError, ValueError):
    """A search-space file or mapping is wrong, or does not fit the persistent study it resumes; the message
    names the file, the key and the fix."""


SourceSetEncoding = Literal["categorical", "inclusion"]
#: The encoding of ``source_set: {type: source_set}`` without ``encoding`` (benchmarks/README.md, "Source-set
#: search": at equal budget it found better sets than the categorical on the benchmark's objectives).
DEFAULT_SOURCE_SET_ENCODING: SourceSetEncoding = "inclusion"
#: The study user attribute that records the encoding a persistent study was created with.
ENCODING_ATTR = "lfmlf.source_set_encoding"
#: The study parameter of one pool language under the inclusion encoding: ``use_de`` (True / False).
INCLUSION_PREFIX = "use_"


class ParamSpec(BaseModel):
    """One parameter of a space file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical", "source_set"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[str | int | float | bool] | None = None
    encoding: SourceSetEncoding | None = None   # type source_set only; None = DEFAULT_SOURCE_SET_ENCODING

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.encoding is not None and self.type != "source_set":
            raise ValueError(f"'encoding' belongs to type source_set, not {self.type}")
        if self.type in ("float", "int"):
            if self.low is None or self.high is None:
                raise ValueError(f"type {self.type} needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) > high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log scale needs low > 0")
            if self.step is not None and (self.log or self.step <= 0):
                raise ValueError("'step' needs a linear scale (no 'log: true') and step > 0")
        if self.type == "categorical" and not self.choices:
            raise ValueError("type categorical needs a non-empty 'choices' list")
        return self


Space = dict[str, ParamSpec]


def searchable(method: str) -> set[str]:
    """The names a space of ``method`` may hold: training settings, ``source_set``, the method's parameters."""
    return (set(TrainConfig.model_fields) - FIXED_TRAIN) | {"source_set"} | set(METHODS[method].param_names())


def load_space(method: str, space: str | dict[str, Any] | None, cfg: SweepConfig | None = None) -> Space:
    """Read and validate one method's space (a file path, an inline mapping, or None = fixed config).
    ``cfg`` is not needed (the names are checked against the method and the training settings)."""
    if space is None:
        return {}
    where = str(space) if isinstance(space, str) else "inline space"
    raw = _read(space) if isinstance(space, str) else space
    valid = searchable(method)
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


def _read(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SpaceError(f"search-space file {path} does not exist. Fix: check the path (relative to the "
                         "sweep file).")
    try:
        return read_yaml(path)
    except ValueError as e:
        raise SpaceError(str(e)) from None


def distributions(space: Mapping[str, ParamSpec], source_sets: Sequence[str]) -> dict[str, BaseDistribution]:
    """The space as Optuna distributions, ``source_set`` a categorical over the sweep's canonical sets."""
    out: dict[str, BaseDistribution] = {}
    for name, s in space.items():
        try:
            out[name] = _distribution(s, source_sets)
        except ValueError as e:   # what Optuna refuses beyond ParamSpec's checks (an int step below 1)
            raise SpaceError(f"parameter '{name}': {e}. Fix: see search_spaces/README.md.") from None
    return out


def _distribution(s: ParamSpec, source_sets: Sequence[str]) -> BaseDistribution:
    if s.type == "float":
        assert s.low is not None and s.high is not None   # ParamSpec's validator
        return FloatDistribution(s.low, s.high, log=s.log, step=s.step)
    if s.type == "int":
        assert s.low is not None and s.high is not None
        return IntDistribution(int(s.low), int(s.high), log=s.log, step=int(s.step or 1))
    if s.type == "categorical":
        assert s.choices is not None
        return CategoricalDistribution(s.choices)
    return CategoricalDistribution(list(source_sets))


def extremes(dist: BaseDistribution) -> list[Any]:
    """The values of ``dist`` that bound what the search can pick: both ends of a range (as Optuna
    adjusted them to the step), every choice of a categorical."""
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return [dist.low] if dist.low == dist.high else [dist.low, dist.high]
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    raise TypeError(f"no extremes for {type(dist).__name__}")


def edges(space: Mapping[str, ParamSpec], source_sets: Sequence[str]) -> dict[str, list[Any]]:
    """Parameter -> :func:`extremes` of its distribution: what the pre-flight check builds the models at."""
    return {name: extremes(dist) for name, dist in distributions(space, source_sets).items()}


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Ask ``trial`` for a value of ``name`` from ``dist``."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"cannot suggest from {type(dist).__name__}")


class InclusionEncoding:
    """The source set as one boolean study parameter per language (``use_<lang>``), for the languages the
    sweep may leave out; ``must_include`` languages are always in and not suggested.

    A sampled combination outside the size bounds (fewer than ``min_sources`` or more than ``max_sources``
    languages) is *rejected*, not repaired: :func:`ask_feasible` tells that Optuna trial FAIL or PRUNED
    without a value (user attribute :data:`INFEASIBLE_ATTR`; never run, and left out of
    :func:`study_summary`'s counts) and asks the sampler again. So what the searcher hands on is the sampler's
    distribution restricted to the allowed sets, and a trial's ``use_<lang>`` parameters are exactly its
    source set. While fewer trials than the sampler's ``n_startup_trials`` have run, the draws are random and
    a rejected one is told FAIL, which TPE does not count, so the random start-up still runs
    ``n_startup_trials`` real trials. After that it is told PRUNED: TPE ignores FAIL trials, so it would
    propose the same out-of-bounds point again and again (its density ratio never changes), while a PRUNED
    trial without intermediate values ranks after every COMPLETE one and every pruned one with values, so TPE
    learns to avoid the region. A deterministic repair would instead pile the mass of every out-of-bounds
    combination onto a few sets (e.g. "none on" always onto the same smallest set); Optuna's
    ``constraints_func`` only ranks infeasible points lower after they have run."""

    def __init__(self, source_sets: Sequence[str]) -> None:
        if not source_sets:
            raise SpaceError("source_set: the sweep has no source set to search. Fix: check languages.sources.")
        members = [frozenset(s.split("+")) for s in source_sets]
        self.pool = tuple(sorted(frozenset().union(*members)))
        self.must = tuple(sorted(frozenset.intersection(*members)))
        self.min_size, self.max_size = min(map(len, members)), max(map(len, members))
        self.free = tuple(lang for lang in self.pool if lang not in self.must) if len(members) > 1 else ()
        every = {frozenset(self.must + c) for k in range(self.min_size - len(self.must),
                                                         self.max_size - len(self.must) + 1)
                 for c in combinations(self.free, k)}
        if len(members) > 1 and set(members) != every:
            raise SpaceError(f"source_set: the sets {list(source_sets)} are not every set of {self.min_size} to "
                             f"{self.max_size} languages of {list(self.pool)} holding {list(self.must)}, which the "
                             "inclusion encoding needs. Fix: use encoding: categorical.")
        self.only = "+".join(sorted(members[0])) if len(members) == 1 else None

    @property
    def param_names(self) -> tuple[str, ...]:
        """The study parameters: ``use_<lang>`` for every language the sweep may leave out."""
        return tuple(INCLUSION_PREFIX + lang for lang in self.free)

    def sample(self, trial: optuna.Trial) -> tuple[str, bool]:
        """Ask ``trial`` for every ``use_<lang>`` (the values it already holds, for a trial asked before);
        returns the canonical set (``must_include`` + the languages on) and whether it is within the bounds."""
        if self.only is not None:   # a single allowed set: nothing to search
            return self.only, True
        chosen = sorted(set(self.must) | {lang for lang in self.free
                                          if trial.suggest_categorical(INCLUSION_PREFIX + lang, [False, True])})
        return "+".join(chosen), self.min_size <= len(chosen) <= self.max_size


#: Out-of-bounds ``use_<lang>`` draws :func:`ask_feasible` accepts in a row before it gives up.
MAX_INFEASIBLE_DRAWS = 1000
#: The user attribute (the sampled set) of a study trial rejected for its source-set size, never run.
INFEASIBLE_ATTR = "lfmlf.infeasible_source_set"


class DefineByRun:
    """Picklable define-by-run function for ``OptunaSearch(space=...)``: suggests every parameter of one
    method's space and returns the constants that Tune adds to the trial config (the method name, and the
    canonical ``source_set`` under the inclusion encoding). ``study_only`` names the study parameters that
    are not trial settings (``use_<lang>``); the searcher drops them from the trial config, so the config
    holds the same keys under either encoding. Under the inclusion encoding the trial must come from
    :func:`ask_feasible`."""

    def __init__(self, method: str, space: Mapping[str, ParamSpec], source_sets: Sequence[str]) -> None:
        self.method = method
        self.space = distributions(space, source_sets)
        spec = space.get("source_set")
        self.encoding: SourceSetEncoding | None = (spec.encoding or DEFAULT_SOURCE_SET_ENCODING) if spec else None
        self.inclusion = InclusionEncoding(source_sets) if self.encoding == "inclusion" else None
        self.study_only = self.inclusion.param_names if self.inclusion else ()
        clash = sorted(set(self.study_only) & set(space))
        if clash:
            raise SpaceError(f"parameter(s) {clash} of method '{method}' clash with the inclusion encoding's "
                             f"'{INCLUSION_PREFIX}<lang>' parameters. Fix: source_set: {{type: source_set, encoding: "
                             "categorical}.")

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        constants, feasible = self.sample(trial)
        if not feasible:
            raise RuntimeError(f"trial {trial.number} holds source set {constants['source_set']}, outside the size "
                               "bounds: under the inclusion encoding trials must be asked with "
                               "lfmlf.search.ask_feasible")
        return constants

    def sample(self, trial: optuna.Trial) -> tuple[dict[str, Any], bool]:
        """Suggest every parameter (the values ``trial`` already holds, for one asked before); returns the
        constants for the trial config and whether the source set is within the size bounds."""
        out: dict[str, Any] = {"method": self.method}
        feasible = True
        for name, dist in self.space.items():
            if name == "source_set" and self.inclusion is not None:
                out["source_set"], feasible = self.inclusion.sample(trial)
            else:
                suggest(trial, name, dist)
        return out, feasible


def ask_feasible(study: optuna.Study, space: DefineByRun) -> optuna.Trial:
    """A new trial of ``study`` whose source set is allowed, its parameters suggested; called by the searcher
    for every new trial. Under the inclusion encoding an out-of-bounds draw is told FAIL (during the sampler's
    random start-up) or PRUNED without a value (after it), with :data:`INFEASIBLE_ATTR`, and the sampler is
    asked again (see :class:`InclusionEncoding`)."""
    startup = getattr(study.sampler, "n_startup_trials", 0)
    for _ in range(MAX_INFEASIBLE_DRAWS):
        trial = study.ask()
        constants, feasible = space.sample(trial)
        if feasible:
            return trial
        trial.set_user_attr(INFEASIBLE_ATTR, constants["source_set"])
        run = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                  if INFEASIBLE_ATTR not in t.user_attrs)
        study.tell(trial, state=TrialState.FAIL if run < startup else TrialState.PRUNED)
    inc = space.inclusion
    assert inc is not None   # only the inclusion encoding draws infeasible sets
    raise SpaceError(f"method '{space.method}': {MAX_INFEASIBLE_DRAWS} draws in a row of the inclusion encoding "
                     f"gave source sets outside {inc.min_size}..{inc.max_size} languages. Fix: source_set: {{type: "
                     "source_set, encoding: categorical}, which samples only allowed sets.")


def study_encoding(study: optuna.Study) -> SourceSetEncoding | None:
    """The source-set encoding ``study`` was created with: its :data:`ENCODING_ATTR`, else (a study from
    before the attribute) what its trials' parameters show; None for a study with neither."""
    recorded = study.user_attrs.get(ENCODING_ATTR)
    if recorded in ("categorical", "inclusion"):
        return "inclusion" if recorded == "inclusion" else "categorical"
    for t in study.get_trials(deepcopy=False):
        if "source_set" in t.params:
            return "categorical"
        if any(p.startswith(INCLUSION_PREFIX) for p in t.params):
            return "inclusion"
    return None


def check_study_encoding(study: optuna.Study, space: DefineByRun, where: str = "") -> None:
    """Called when a searcher opens its persistent study (a new sweep, or a resumed one): records the space's
    source-set encoding on a study that has none, and refuses a study created with the other encoding
    (its parameters differ, so TPE could learn nothing from its trials and the study would mix both)."""
    if space.encoding is None:
        return
    before = study_encoding(study)
    if before is None:
        study.set_user_attr(ENCODING_ATTR, space.encoding)
    elif before != space.encoding:
        raise SpaceError(
            f"the Optuna study {study.study_name}{where} was created with source_set encoding '{before}', but "
            f"the space of method '{space.method}' now asks for '{space.encoding}'; the two have different study "
            f"parameters, so the study cannot go on with the other one. Fix: write source_set: {{type: "
            f"source_set, encoding: {before}}} in the space to resume this sweep, or start a new sweep.")


class SearchSampler(optuna.samplers.TPESampler):
    """Optuna's TPE sampler with its ``n_startup_trials`` readable (:func:`ask_feasible` reads it)."""

    def __init__(self, *, n_startup_trials: int, **kwargs: Any) -> None:
        super().__init__(n_startup_trials=n_startup_trials, **kwargs)
        self.n_startup_trials = n_startup_trials


def make_sampler(seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate, grouped TPE with the constant liar (parallel trials do not all pick the same point)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return SearchSampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True, group=True,
                         constant_liar=True)


def search_metric(cfg: SweepConfig) -> str:
    """The metric the studies optimise and ``lfmlf best`` selects on (``{metric}`` = the task's metric)."""
    return cfg.search.metric.format(metric=TASKS[cfg.task.name].metric)


def search_objectives(cfg: SweepConfig) -> list[tuple[str, str]]:
    """``search.objectives`` resolved (``{metric}`` = the task's metric) as (metric, mode) pairs; empty for a
    single-objective sweep. Called when the sweep's searchers are built and when it is summarised."""
    task_metric = TASKS[cfg.task.name].metric
    out: list[tuple[str, str]] = [(o.metric.format(metric=task_metric), o.mode) for o in cfg.search.objectives or ()]
    resolved = [m for m, _ in out]
    dupes = sorted({m for m in resolved if resolved.count(m) > 1})
    if dupes:
        raise SpaceError(f"search.objectives: {dupes} is listed more than once when {{metric}} is the task's metric "
                         f"({task_metric}). Fix: give each metric once.")
    return out


def study_directions(modes: Sequence[str]) -> list[optuna.study.StudyDirection]:
    """``max`` / ``min`` per objective as Optuna study directions."""
    return [optuna.study.StudyDirection.MAXIMIZE if m == "max" else optuna.study.StudyDirection.MINIMIZE
            for m in modes]


def check_study_directions(study: optuna.Study, modes: Sequence[str], where: str = "") -> None:
    """Called when a searcher opens its persistent study and before a resumed sweep goes on: Optuna loads an
    existing study with the directions it was created with, whatever it is asked for, so a study created
    single-objective and resumed multi-objective (or with other objectives) is refused here."""
    wanted = study_directions(modes)
    if list(study.directions) == wanted:
        return
    have = [d.name.lower() for d in study.directions]
    raise SpaceError(
        f"the Optuna study {study.study_name}{where} was created with {len(have)} objective(s) ({', '.join(have)}), "
        f"but the sweep file now asks for {len(wanted)} ({', '.join(d.name.lower() for d in wanted)}); a study "
        "keeps its objectives. Fix: write back the search.objectives (or search.metric / search.mode) the sweep "
        "started with to resume it, or start a new sweep.")


def pareto_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The multi-objective study's Pareto-optimal COMPLETE trials (Optuna's ``best_trials``), by number;
    called by the sweep summary."""
    study = optuna.load_study(study_name=name, storage=study_storage(url))
    return sorted(study.best_trials, key=lambda t: t.number)


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


def study_storage(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage at ``url`` (picklable: Tune keeps the searcher, and this with it, in its experiment
    state, so a resumed sweep writes to the same study)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the first open creates the schema; two sweeps doing that at once on one SQLite file can break it
    db = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    with FileLock(db + ".lock", timeout=300) if db else contextlib.nullcontext():
        return optuna.storages.RDBStorage(url)


def trial_finished(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the persistent study already holds ``trial`` as finished (COMPLETE, PRUNED or FAIL)."""
    return study._storage.get_trial(trial._trial_id).state.is_finished()


def fail_orphaned_trials(url: str, name: str) -> int:
    """Mark the study's trials still RUNNING as FAIL; called when every Tune trial of the study has ended,
    so these are trials whose process was killed (SIGKILL) before it could report. Returns how many."""
    storage = study_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for t in orphans:
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(orphans)


def check_stored_study(url: str, name: str, space: DefineByRun, modes: Sequence[str] | None = None) -> None:
    """:func:`check_study_encoding` (and, given ``modes``, :func:`check_study_directions`) for a study in
    storage, if it exists; for a resumed sweep whose searchers come back from Tune's experiment state (built
    with the space and objectives of the first start), called with what the sweep file gives now."""
    try:
        study = optuna.load_study(study_name=name, storage=study_storage(url))
    except KeyError:
        return
    check_study_encoding(study, space, f" (in {url})")
    if modes is not None:
        check_study_directions(study, modes, f" (in {url})")


# fANOVA fits a random forest to (parameters -> score) pairs and splits its variance by parameter. Below
# 10 trials per searched parameter (the one-in-ten rule of thumb for regression models) and 20 in all, the
# forest mostly memorises which few trials scored best, so the shares are printed with a caveat.
IMPORTANCE_EVALUATOR = "fANOVA (optuna.importance.FanovaImportanceEvaluator, 64 trees, seed 0)"
IMPORTANCE_MIN_TRIALS = 20
IMPORTANCE_TRIALS_PER_PARAM = 10


def importance_threshold(n_params: int) -> int:
    """COMPLETE trials below which importances are "indicative only" (see the comment above)."""
    return max(IMPORTANCE_MIN_TRIALS, IMPORTANCE_TRIALS_PER_PARAM * n_params)


def study_summary(url: str, name: str, exclude: Collection[int] = ()) -> dict[str, Any]:
    """Trial counts by state and fANOVA parameter importances over the study's COMPLETE trials only.

    ``exclude``: Optuna trial numbers that are not eligible although COMPLETE in the study (trials that
    ASHA stopped, as MLflow tags them, in sweeps recorded before stopped trials became PRUNED). Returns
    ``counts`` (state -> n), ``n_trials``, ``evaluator``, ``n_used`` (the trials the importances are
    computed on), ``excluded`` (reason -> n), ``infeasible`` (draws of the inclusion encoding rejected for
    their source-set size, see :class:`InclusionEncoding`; never run, so in neither ``counts`` nor
    ``n_trials``), ``importances`` (parameter -> share, summing to 1; empty when not computed), ``why``
    (why not computed, else "") and ``caveat`` (when ``n_used`` is below
    :func:`importance_threshold`, else "")."""
    study = optuna.load_study(study_name=name, storage=study_storage(url))
    drawn = study.get_trials(deepcopy=False)
    trials = [t for t in drawn if INFEASIBLE_ATTR not in t.user_attrs]   # the trials that were run
    counts = {state.name.lower(): sum(1 for t in trials if t.state == state) for state in TrialState}
    skip = {int(n) for n in exclude}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    used = [t for t in complete if t.number not in skip]
    excluded = {k: v for k, v in (("pruned (stopped early)", counts.get("pruned", 0)),
                                  ("complete but stopped early (MLflow tag)", len(complete) - len(used)),
                                  ("failed", counts.get("fail", 0)), ("running", counts.get("running", 0)),
                                  ("waiting", counts.get("waiting", 0))) if v}
    params = sorted({p for t in used for p in t.params})
    out: dict[str, Any] = {"counts": counts, "n_trials": len(trials), "evaluator": IMPORTANCE_EVALUATOR,
                           "n_used": len(used), "n_params": len(params), "excluded": excluded,
                           "infeasible": len(drawn) - len(trials),
                           "importances": {}, "why": "", "caveat": ""}
    if len(used) < 2 or len({tuple(sorted(t.params.items())) for t in used}) < 2:
        out["why"] = (f"needs at least 2 COMPLETE trials with different parameters; the study has {len(used)} "
                      "eligible")
        return out
    eligible = optuna.create_study(directions=study.directions)   # in memory: the eligible trials only
    eligible.add_trials(used)
    try:
        out["importances"] = {k: float(v) for k, v in optuna.importance.get_param_importances(
            eligible, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)).items()}
    except (RuntimeError, ValueError) as e:   # e.g. every trial scored the same
        out["why"] = f"not computed: {e}"
        logging.getLogger(__name__).warning("parameter importance of %s not computed: %s", name, e)
        return out
    need = importance_threshold(len(params))
    if len(used) < need:
        out["caveat"] = (f"indicative only: {len(used)} COMPLETE trials for {len(params)} parameter(s), fewer "
                         f"than {need} ({IMPORTANCE_TRIALS_PER_PARAM} per parameter, at least "
                         f"{IMPORTANCE_MIN_TRIALS}); with so few trials fANOVA's random forest mostly reflects "
                         "which few trials scored best")
    return out
