"""The distillation teacher-state cache: the frozen pre-trained encoder's last hidden states, by example.

Distillation (``forgetting: distill`` of LF-MLF, GEM and A-GEM, and the ``distill`` penalty method) compares
the live encoder's hidden states with those of a frozen copy at theta0. The frozen states of an example never
change during a trial, so :class:`TeacherStates` computes them once per distinct example and keeps them:
later steps that see the same example (several epochs, small source pools, a fixed unlabelled text file) read
them instead of running the frozen forward again. What remains of the forgetting term's cost is the backward
through the live encoder, which the objective needs.

An example is keyed by its unpadded token ids (the bytes of ``input_ids[attention_mask]``), so a sentence hits
whatever sub-batch it comes in and however long that sub-batch is padded. This relies on the frozen forward of
a sequence not depending on the padding around it, which holds for the right-padded batches of
``lfmlf.tasks.base.collate`` (masked attention; positions counted from the first token); a recomputed state
matches a stored one to float32 rounding (about 1e-6, the batch's matmul blocking differs).

Storage (on the reference encoder's device): ``float32`` (default) keeps the states exactly as the frozen
forward produced them, so the objective, its value and its gradient are those of the uncached computation;
``bfloat16`` or ``float16`` halve the memory and round every stored state (relative error about 4e-3 for
bfloat16, 5e-4 for float16, before the states are cast back to float32 for the loss). The store holds at most
``max_mb`` megabytes (2**20 bytes of states plus keys); once full, new examples are computed every time they
come and counted as ``uncached``, never silently dropped from the objective.

Once per node rather than once per trial: :func:`node_states` computes the states of a whole training set once
per machine and stores them next to the tokenised data (:mod:`lfmlf.data.cache`, JSON + safetensors, built once
under a file lock); every later trial on the node reads them into its store before the first step, so even its
first pass over the data hits. (Read into memory, not memory-mapped: the codec's ``load_file`` copies.)

Created in ``setup`` of a distilling objective or method (once per trial, the model at theta0); called every
step from :func:`lfmlf.forgetting.distill_loss`; ``report`` at every evaluation.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

from lfmlf.data.cache import cacheable, cached, fingerprint

log = logging.getLogger(__name__)

TeacherDtype = Literal["float32", "bfloat16", "float16"]
_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TeacherStates:
    """The frozen encoder's last hidden states for collated sub-batches, each example computed once.

    ``cache=False`` runs the frozen forward on every sub-batch (the uncached objective, for comparison and
    when memory is short); it still counts the rows it computed as misses."""

    def __init__(self, reference: nn.Module, *, cache: bool = True, dtype: TeacherDtype = "float32",
                 max_mb: float = 1024.0) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"teacher dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if not max_mb > 0:
            raise ValueError(f"the teacher cache's max_mb must be > 0, got {max_mb}")
        self.reference = reference
        self.cache = cache
        self.dtype = _DTYPES[dtype]
        self.max_bytes = int(max_mb * 2**20)
        self.states: dict[bytes, Tensor] = {}   # unpadded token ids (int64 bytes) -> [length, hidden]
        self.bytes = 0        # payload held: states (numel * element size) + keys (len)
        self.hits = 0         # rows read from the store
        self.misses = 0       # rows computed by the frozen forward
        self.uncached = 0     # of the misses, rows not stored because the store was full
        self.loaded = 0       # examples read from the per-node store on disk (:func:`node_states`)
        self.node_store = 0   # training sets whose states come from the per-node store (:func:`precompute`)
        self.too_big = 0      # training sets left to fill step by step: their states exceed max_mb
        self.precomputed = 0  # rows the frozen forward ran on in setup, for the per-node store (not misses)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Called every step for each sub-batch to distil on: the frozen encoder's last hidden states
        [B, T, H] in float32. Rows computed now come from the frozen forward as they are; rows read from the
        store have zeros at padded positions (the loss masks them)."""
        if not self.cache:
            self.misses += input_ids.shape[0]
            return self._forward(input_ids, attention_mask).float()
        mask = attention_mask.bool()
        ids, cpu_mask = input_ids.detach().to("cpu", torch.int64), mask.cpu()
        keys = [ids[i][cpu_mask[i]].numpy().tobytes() for i in range(ids.shape[0])]
        missing = [i for i, k in enumerate(keys) if k not in self.states]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if len(missing) == len(keys):   # the whole sub-batch as given: the uncached computation exactly
            fresh = self._forward(input_ids, attention_mask)
            self._store(keys, mask, fresh)
            return fresh.float()
        hit = mask.clone()
        hit[missing] = False
        absent = set(missing)
        stored = torch.cat([self.states[k] for i, k in enumerate(keys) if i not in absent])
        out = torch.zeros(*mask.shape, stored.shape[-1], dtype=torch.float32, device=stored.device)
        out[hit.to(out.device)] = stored.float()   # row-major: each hit row's tokens in order
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            width = int(cpu_mask[missing].any(0).nonzero().max()) + 1   # drop columns padded in every row
            fresh = self._forward(input_ids[rows, :width], attention_mask[rows, :width])
            self._store([keys[i] for i in missing], mask[rows, :width], fresh)
            out[rows.to(out.device), :width] = fresh.float()
        return out

    def report(self) -> dict[str, float]:
        """Called at every evaluation: the store's size and counters (cumulative over the trial)."""
        return {"teacher_cache_mb": self.bytes / 2**20, "teacher_hits": float(self.hits),
                "teacher_misses": float(self.misses), "teacher_uncached": float(self.uncached),
                "teacher_loaded": float(self.loaded), "teacher_node_sets": float(self.node_store),
                "teacher_sets_too_big": float(self.too_big), "teacher_precomputed": float(self.precomputed)}

    def pack(self, only: Iterable[bytes] | None = None) -> PackedStates:
        """Everything stored (or the examples ``only`` names), as three flat tensors on the CPU (what
        :func:`node_states` writes to disk)."""
        keys = list(self.states) if only is None else [k for k in only if k in self.states]
        hidden = next(iter(self.states.values())).shape[-1] if keys else 0
        ids = [torch.frombuffer(bytearray(k), dtype=torch.int64) for k in keys]
        return PackedStates(
            ids=torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int64),
            lengths=torch.tensor([len(i) for i in ids], dtype=torch.int64),
            states=torch.cat([self.states[k].cpu() for k in keys]) if keys else torch.zeros(0, hidden,
                                                                                               dtype=self.dtype))

    def load(self, packed: PackedStates) -> None:
        """Called before the first step: add the examples of ``packed`` (read from disk) to the store, as
        views of one tensor on the reference's device, up to ``max_mb`` (the rest counted as uncached)."""
        device = next(self.reference.parameters()).device
        states = packed.states.to(device=device, dtype=self.dtype)
        lengths = packed.lengths.tolist()
        for ids, state in zip(packed.ids.split(lengths), states.split(lengths)):
            key = ids.numpy().tobytes()
            size = state.numel() * state.element_size() + len(key)
            if key in self.states:
                continue
            if self.bytes + size > self.max_bytes:
                self.uncached += 1
                continue
            self.states[key] = state
            self.bytes += size
            self.loaded += 1

    def _forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        with torch.no_grad():
            return self.reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _store(self, keys: list[bytes], mask: Tensor, fresh: Tensor) -> None:
        """Keep the unpadded states of the rows of ``fresh`` (``keys[j]``, boolean ``mask[j]`` on its device)
        while they fit in ``max_mb``; the others are counted as uncached."""
        for j, k in enumerate(keys):
            if k in self.states:    # the same sentence twice in one sub-batch
                continue
            state = fresh[j][mask[j]].to(self.dtype)   # boolean indexing copies: no view of fresh
            size = state.numel() * state.element_size() + len(k)
            if self.bytes + size > self.max_bytes:
                self.uncached += 1
                continue
            self.states[k] = state
            self.bytes += size


class TeacherParams(BaseModel):
    """The distillation hyper-parameters (teacher cache, distilled fraction) of every method that distils; a
    mixin of their parameter models (``class DistillParams(PenaltyParams, TeacherParams)``), read in ``setup``
    (:meth:`teacher_options` for :class:`TeacherStates`, ``distill_fraction`` for the objective)."""

    teacher_cache: bool = Field(True, description="Distillation: compute the frozen encoder's hidden states "
                                "once per distinct example and keep them for the trial (false: one frozen "
                                "forward per sub-batch every step; same objective).")
    teacher_dtype: TeacherDtype = Field("float32", description="Distillation: storage dtype of the cached frozen "
                                        "states; float32 is exact, bfloat16/float16 halve the memory and round "
                                        "the states (relative error ~4e-3 / ~5e-4), which changes the objective "
                                        "slightly.")
    teacher_cache_max_mb: float = Field(1024.0, gt=0.0, description="Distillation: most megabytes of cached "
                                        "states per trial, on the model's device; examples beyond it are "
                                        "recomputed every time (counted as distill/teacher_uncached).")

    distill_fraction: float = Field(1.0, gt=0.0, le=1.0, description="Distillation: share of each sub-batch "
                                    "distilled (its first ceil(f * B) examples, a uniform subset). Below 1 this "
                                    "changes the objective: a cheaper, noisier estimate of the distance.")

    def teacher_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`TeacherStates` (and ``DistillForgetting``) from these parameters."""
        return {"cache": self.teacher_cache, "dtype": self.teacher_dtype, "max_mb": self.teacher_cache_max_mb}


@cacheable
@dataclass
class PackedStates:
    """A teacher store as flat tensors: every example's unpadded token ids (concatenated), their lengths,
    and their frozen states (concatenated along the tokens). Stored by :func:`node_states`."""

    ids: Tensor        # int64 [total tokens]
    lengths: Tensor    # int64 [examples]
    states: Tensor     # [total tokens, hidden], the store's dtype


#: Bumped when the stored states would differ for the same key (how they are computed or packed).
_NODE_CACHE_VERSION = 1


def node_states(teacher: TeacherStates, batches: Callable[[], Iterable[tuple[Tensor, Tensor]]], theta0_key: str,
                data_key: str, cache_dir: str | Path) -> bool:
    """Called once per trial in ``setup``, before the first step, when the frozen states of a whole training
    set should be computed once per node and shared by every trial on it: fills ``teacher`` from
    ``<cache_dir>/teacher_states/<key>`` (through :func:`lfmlf.data.cache.cached`: the first trial on the node
    computes it under a file lock by running the teacher on every ``(input_ids, attention_mask)`` of
    ``batches()``, the others read it). ``theta0_key`` must name the model's pre-trained state (e.g.
    :func:`lfmlf.probes.model_key`), ``data_key`` the examples and their tokenisation (e.g. the tokenised-data
    cache's key); the storage dtype is part of the key. The batches must be built as the training steps build
    them (right-padded; the same autocast). Returns whether the states were read from disk. A store whose
    ``cache`` is off is left alone (False)."""
    if not teacher.cache:
        return False
    key = fingerprint("teacher-states", _NODE_CACHE_VERSION, theta0_key, data_key, str(teacher.dtype))

    def build() -> PackedStates:
        before = set(teacher.states)
        for input_ids, attention_mask in batches():
            teacher(input_ids, attention_mask)
        return teacher.pack([k for k in teacher.states if k not in before])   # this set's examples only

    packed, hit = cached(Path(cache_dir), "teacher_states", key, build)
    if hit:
        teacher.load(packed)
    return hit


def precompute(teacher: TeacherStates, training_sets: Iterable[Any]) -> None:
    """Called once in a distilling objective's setup (the model at theta0, before the first step) with the
    sources' training sets (``lfmlf.methods.base.TrainingSet``, one per language): each set whose frozen
    states fit in what is left of the store (``max_mb``, sized from its token count before any forward) is
    filled through the per-node store (:func:`node_states`: computed once per machine by the first trial,
    read by the others), so even the trial's first pass over the data hits; a set that does not fit is left
    to fill step by step, counted (``teacher_sets_too_big``) and logged. Nothing happens with ``cache`` off."""
    if not teacher.cache:
        return
    config = getattr(teacher.reference, "config", None)
    hidden = int(getattr(config, "hidden_size", 0))
    per_token = hidden * torch.empty((), dtype=teacher.dtype).element_size() + 8
    for ts in training_sets:
        need = ts.tokens * per_token
        if not hidden or teacher.bytes + need > teacher.max_bytes:
            teacher.too_big += 1
            log.warning("distillation: the frozen states of a training set (%.0f MB) do not fit in what is left of "
                        "teacher_cache_max_mb (%.0f MB); they are cached as the steps meet them instead. Raise "
                        "teacher_cache_max_mb to compute them once per node.", need / 2**20,
                        (teacher.max_bytes - teacher.bytes) / 2**20)
            continue
        hits, misses = teacher.hits, teacher.misses
        node_states(teacher, ts.batches, ts.theta0_key, ts.data_key, ts.cache_dir)
        teacher.precomputed += teacher.misses - misses   # setup's forwards are not the steps' misses
        teacher.hits, teacher.misses = hits, misses
        teacher.node_store += 1
