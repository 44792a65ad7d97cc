#!/usr/bin/env python
"""A/B micro-benchmark of the gradient-combination plumbing: the old and the new implementation of a piece,
alternated in one process (old first on even repeats, new first on odd ones), medians reported, so a load
that changes while it runs (other jobs on the same cores) slows both alike.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/plumbing_micro.py                  # gram, l2, hooks: e5 shapes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/plumbing_micro.py --pieces gram --repeats 41
    OMP_WAIT_POLICY=PASSIVE python benchmarks/plumbing_micro.py --pieces hooks --backward   # real e5 backward

Pieces:
  gram   ``lfmlf.qp.gram(G, g_F)`` (two batched matmuls over views of G) against the chunk loop it replaced
         (``lfmlf.qp._gram_chunk_loop``: ~6 kernel calls per 2^18-column chunk), on random G [K, D] and g_F
         [D] with D the e5 encoder's size in the QP (word embeddings frozen: 10,844,928). Also checks that
         both give the same bits. ``gram_matrix`` (MGDA, PCGrad: Q only) is timed too.
  l2     ``L2Forgetting.value_and_grad``: g_F = theta - theta0 and 1/2 ||g_F||^2 over the e5 parameter shapes
         in one buffer (``share_storage``, as the gradient methods' setup does), read in place through
         ``flat_view``, against the old path, where ``flat_view`` never found the buffer (it looked at
         ``.data._base``, which a parameter whose ``.data`` was set to a view does not keep) and
         ``flat_params`` flattened theta (~100 copies) every step.
  hooks  ``GradRows._store`` (called by each parameter's post-accumulate hook): a float32 row written through
         a NumPy view against ``copy_`` (the old way). Without ``--backward``: a fresh gradient of each e5
         parameter shape is made and stored, K rows. With ``--backward``: a real backward through the 6-layer
         e5 encoder (``.cache/e5-6l``) of a loss on a ``--batch`` (5 x 32), K times per variant on one retained graph,
         so both variants replay the same autograd work; reported is the whole backward's time.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from lfmlf.forgetting import L2Forgetting
from lfmlf.grads import GradRows, flatten, share_storage
from lfmlf.qp import _gram_chunk_loop, gram, gram_matrix

REPO = Path(__file__).resolve().parents[1]
E5_DIR = REPO / ".cache" / "e5-6l"


def _torch_store(self: GradRows, i: int, p: torch.Tensor) -> None:
    """The old ``GradRows._store``: one torch ``copy_`` (an OpenMP region) per parameter."""
    start, end = self.offsets[i]
    assert self._row is not None and p.grad is not None
    self._row[start:end].copy_(p.grad.reshape(-1))
    p.grad = None
    self._hit[i] = True


def _ab(fns: dict[str, object], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the order rotated every repeat."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[k]()   # type: ignore[operator]
            times[k].append(time.perf_counter() - t)
    return times


def _report(title: str, times: dict[str, list[float]], base: str) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{title}: median ms over {len(times[base])} repeats")
    for k, m in med.items():
        print(f"  {k:<28} {1e3 * m:8.1f}   x{m / med[base]:.2f}")


def bench_gram(K: int, D: int, repeats: int) -> None:
    torch.manual_seed(0)
    G, g_f = torch.randn(K, D), torch.randn(D)
    old, new = _gram_chunk_loop(G, g_f, torch.float32), gram(G, g_f)
    same = torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])
    print(f"gram K={K} D={D}: same bits as the chunk loop: {same}")
    times = _ab({"old chunk loop": lambda: _gram_chunk_loop(G, g_f, torch.float32),
                 "new gram (2 bmm)": lambda: gram(G, g_f),
                 "old Q only (MGDA)": lambda: _gram_chunk_loop(G, G[0], torch.float32),
                 "new gram_matrix": lambda: gram_matrix(G)}, repeats)
    _report("gram", times, "old chunk loop")


def bench_l2(repeats: int) -> None:
    params = [torch.nn.Parameter(torch.randn(s)) for s in _shapes()]
    share_storage(params)

    class Model:   # what L2Forgetting reads from a TaskModel
        def pretrained_parameters(self):
            return [(str(i), p) for i, p in enumerate(params)]

    l2, model = L2Forgetting(), Model()
    l2.setup(model)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in params:
            p.add_(0.01)

    def old() -> None:
        ps = [p for _, p in model.pretrained_parameters()]
        g = torch.sub(flatten([p.detach() for p in ps], ps), l2.theta0, out=l2.g)
        0.5 * torch.dot(g, g).item()

    print(f"l2 g_F: {len(params)} parameters, D={l2.theta0.numel()}")
    times = _ab({"old flatten + sub": old, "new flat_view + sub": lambda: l2.value_and_grad(model, None)},  # type: ignore[arg-type]
                repeats)
    _report("l2 g_F and F", times, "old flatten + sub")


def _shapes() -> list[tuple[int, ...]]:
    """The e5 encoder's trainable parameter shapes (no word embeddings, no pooler), without loading it."""
    hidden, ffn, layers = 384, 1536, 6
    shapes: list[tuple[int, ...]] = [(512, hidden), (2, hidden), (hidden,), (hidden,)]
    for _ in range(layers):
        for _ in range(4):                                  # query, key, value, attention output
            shapes += [(hidden, hidden), (hidden,)]
        shapes += [(hidden,), (hidden,), (ffn, hidden), (ffn,), (hidden, ffn), (hidden,), (hidden,), (hidden,)]
    return shapes


def bench_hooks_synthetic(K: int, repeats: int) -> None:
    params = [torch.nn.Parameter(torch.zeros(s)) for s in _shapes()]
    rows = GradRows(params)
    G = torch.empty(K, rows.numel)
    print(f"hooks (synthetic): {len(params)} parameters, D={rows.numel}, K={K}")

    def store_all(store) -> None:
        for k in range(K):
            rows._row, rows._row_np = G[k], G[k].numpy()
            for i, p in enumerate(params):
                p.grad = torch.empty_like(p).fill_(0.5)   # a fresh gradient, as autograd leaves it
                store(rows, i, p)
        rows._row, rows._row_np = None, None

    new_store = GradRows._store
    times = _ab({"old copy_": lambda: store_all(_torch_store), "new numpy view": lambda: store_all(new_store)}, repeats)
    _report("hooks, K rows (fresh gradient + store)", times, "old copy_")


def bench_hooks_backward(K: int, repeats: int, batch: tuple[int, int]) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(E5_DIR))
    model.train()
    params = [p for n, p in model.named_parameters() if "word_embeddings" not in n and "pooler" not in n]
    for n, p in model.named_parameters():
        p.requires_grad_("word_embeddings" not in n and "pooler" not in n)
    rows = GradRows(params)
    G = torch.empty(K, rows.numel)
    print(f"hooks (e5 backward): {len(params)} parameters, D={rows.numel}, K={K}, batch {batch[0]} x {batch[1]}")
    new_store = GradRows._store
    names = ("old copy_", "new numpy view")
    times: dict[str, list[float]] = {k: [] for k in names}
    in_store: dict[str, list[float]] = {k: [] for k in names}
    gen = torch.Generator().manual_seed(0)
    for r in range(repeats):
        ids = torch.randint(1000, 20000, batch, generator=gen)
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.square().mean()
        order = [(names[0], _torch_store), (names[1], new_store)]
        for name, store in order if r % 2 == 0 else order[::-1]:
            spent = [0.0]

            def timed(self: GradRows, i: int, p: torch.Tensor, store=store, spent=spent) -> None:
                t0 = time.perf_counter()
                store(self, i, p)
                spent[0] += time.perf_counter() - t0

            GradRows._store = timed   # type: ignore[method-assign]
            t = time.perf_counter()
            for k in range(K):
                rows.backward(loss, G[k], retain_graph=True)
            times[name].append(time.perf_counter() - t)
            in_store[name].append(spent[0])
        GradRows._store = new_store   # type: ignore[method-assign]
        del loss
    _report("hooks: K backward passes through e5 (autograd + stores)", times, names[0])
    _report("  of which inside _store", in_store, names[0])
    diff = [b - a for a, b in zip(times[names[0]], times[names[1]])]
    print(f"  paired difference new - old, whole backward: median {1e3 * statistics.median(diff):.1f} ms")


E5_NUMEL = sum(math.prod(s) for s in _shapes())   # 10,844,928: what the e5 trial puts in the QP


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", default="gram,l2,hooks", help="comma-separated: gram, l2, hooks")
    ap.add_argument("--K", type=int, default=3, help="source languages (rows of G)")
    ap.add_argument("--D", type=int, default=E5_NUMEL, help="columns of G for the gram piece")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--backward", action="store_true", help="hooks: time real e5 backward passes")
    ap.add_argument("--batch", default="5x32", help="hooks --backward: sequences x tokens of the e5 input")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D per row {args.D} "
          f"({4 * args.D / 2**20:.0f} MB float32), K={args.K}, chunks {math.ceil(args.D / 2**18)}")
    pieces = args.pieces.split(",")
    if "gram" in pieces:
        bench_gram(args.K, args.D, args.repeats)
    if "l2" in pieces:
        bench_l2(args.repeats)
    if "hooks" in pieces:
        if args.backward:
            rows, tokens = (int(x) for x in args.batch.split("x"))
            bench_hooks_backward(args.K, args.repeats, (rows, tokens))
        else:
            bench_hooks_synthetic(args.K, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
