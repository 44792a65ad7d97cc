"""The Method interface and what the loop hands a method each step.

Call order in a trial: ``METHODS[name](**params)`` (hyper-parameters validated, unknown ones rejected)
-> ``setup(model, sources)`` once, after the model is on its device and before the first step (theta0
is snapshotted here) -> ``backward(objectives)`` every micro-batch -> ``report()`` at every evaluation.
On resume, ``setup`` runs on the freshly built model and then ``load_state_dict`` restores counters.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from lfmlf.config import check_fields
from lfmlf.forgetting import Needs
from lfmlf.models import TaskModel


class MethodParams(BaseModel):
    """Base of every method's hyper-parameters: typed, defaults, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StepObjectives:
    """What the loop computed on one micro-batch, one entry per source language present in it."""

    task: Mapping[str, Tensor]                     # mean task loss per source language (graph attached)
    hidden: Mapping[str, Tensor]                   # last hidden states per source language (graph attached)
    batches: Mapping[str, Mapping[str, Tensor]]    # the sub-batches themselves (on the device)
    sizes: Mapping[str, int]                       # examples per sub-batch
    grad_scale: float                              # multiply what you add to .grad by this (1 / grad_accum)
    unlabelled: Mapping[str, Tensor] | None = None  # unlabelled text (masked: with "labels"), if needs() asks


@dataclass
class SetupData:
    """Training data a method may look at once in ``setup`` (EWC's Fisher), before the first step. Drawing
    from it moves neither the training streams nor any RNG of the loop."""

    batches: Callable[[int], Iterator[Mapping[str, Mapping[str, Tensor]]]]   # n -> n micro-batches {lang: sub-batch}
    loss: Callable[[TaskModel, Mapping[str, Tensor]], tuple[Tensor, Tensor]]  # the task's loss: (mean loss, hidden)
    # every training example of each source once (one entry per source language), for a per-node store of
    # the frozen encoder's states (:func:`lfmlf.teacher.precompute`); built only when called (most methods
    # never ask, and keying the sets hashes the model and tokenizer); none where the caller cannot give them
    training_sets: Callable[[], Iterable[TrainingSet]] = lambda: ()


@dataclass
class TrainingSet:
    """One source language's whole training data, as a distilling objective precomputes teacher states from it
    (the loop builds it lazily: nothing is collated unless an objective asks)."""

    batches: Callable[[], Iterator[tuple[Tensor, Tensor]]]   # (input_ids, attention_mask), right-padded, on the device
    tokens: int                                               # real tokens in all of it (to size the store first)
    theta0_key: str                                           # names the model's pre-trained state
    data_key: str                                             # names the language's examples and tokenisation
    cache_dir: str                                            # the node's data cache (lfmlf.data.cache)


P = TypeVar("P", bound=MethodParams)


class Method(ABC, Generic[P]):
    """One fine-tuning method, generic in its parameter model: ``class Lfmlf(GradientMethod[LfmlfParams])``
    types ``self.params`` as ``LfmlfParams`` and makes ``Lfmlf.Params`` that class. Its whole algebra lives
    in its own short module."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams   # set from the type argument (see __init_subclass__)
    params: P

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``Params`` from the class's own type argument: a parameter class, or the bound of a type variable
        (``GradientMethod(Method[GP])`` with ``GP`` bound to ``GradientParams``)."""
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            for arg in get_args(base):
                found = arg.__bound__ if isinstance(arg, TypeVar) else arg
                if isinstance(found, type) and issubclass(found, MethodParams):
                    cls.Params = found

    def __init__(self, **params: Any) -> None:
        self.params = cast(P, self.Params(**params))   # Params is P's class (set in __init_subclass__)

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> None:
        """Raise ValueError naming every bad or unknown hyper-parameter and the valid ones."""
        check_fields(cls.Params, params, "parameter", f"'{cls.name}'")

    def needs(self) -> Needs:
        """Called before the model is built (and at config load): what this configuration needs from
        the loop (an MLM head, unlabelled text). Decided from the parameters alone."""
        return Needs()

    @classmethod
    def param_names(cls) -> list[str]:
        return list(cls.Params.model_fields)

    def setup(self, model: TaskModel, sources: Sequence[str], data: SetupData | None = None) -> None:
        """Called once per trial before the first step, with the model at theta0. ``data`` gives access
        to training batches for one-off estimates (the loop always passes it; most methods ignore it)."""
        self.sources = tuple(sources)

    @abstractmethod
    def backward(self, obj: StepObjectives) -> dict[str, float]:
        """Called every micro-batch: add this method's update to the trainable parameters' ``.grad``
        (the loop zeroes them, clips, and steps the optimizer). Returns per-step signals (floats) that the
        loop averages between evaluations and reports under their own keys."""

    def report(self) -> dict[str, float]:
        """Called at every evaluation: cumulative counters (e.g. QP fallbacks), reported as they are."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume besides the model and optimizer (counters)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Called on resume after ``setup``."""
