"""benchmarks/gpu_check.py: its CPU-only parts (no-CUDA exit, the overlap and trial checks, the tables, the
sweep file it writes, the xlm-roberta-shaped random model, the loop's device metric) and, marked slow, the
whole script on the CPU (``--cpu-smoke``)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, tiny_spec

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gc = _load()


def _run(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env}, cwd=REPO, check=False)


# ------------------------------------------------------------------------------------------------ no CUDA
def test_without_cuda_it_says_so_and_exits_0():
    proc = _run(CUDA_VISIBLE_DEVICES="")   # hides any GPU: torch.cuda.is_available() is False
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "GPU checks were skipped" in proc.stdout
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ overlaps
def test_overlaps_finds_intervals_that_share_time_and_not_those_that_touch():
    iv = {"a": (0.0, 10.0), "b": (4.0, 12.0), "c": (12.0, 20.0), "d": (19.5, 30.0)}
    assert gc.overlaps(iv) == [("a", "b", 6.0), ("c", "d", 0.5)]
    assert gc.overlaps(iv, min_s=2.0) == [("a", "b", 6.0)]          # 0.5 s is not sharing
    assert gc.overlaps({"a": (0.0, 5.0), "b": (5.0, 9.0)}) == []     # one ends as the other starts
    assert gc.max_concurrent(iv) == 2
    assert gc.max_concurrent({"a": (0.0, 5.0), "b": (5.0, 9.0)}) == 1
    assert gc.max_concurrent({"a": (0.0, 9.0), "b": (1.0, 8.0), "c": (2.0, 3.0)}) == 3


def _runs(spans, cuda=1.0, status="FINISHED"):
    methods = ["mlf", "mlf", "lfmlf", "lfmlf"]
    return [gc.TrialRun(run_id=f"run{i}abcdef", method=methods[i], status=status, start=s, end=e,
                        metrics={"perf/cuda": cuda, "perf/steps_per_s": 5.0, "perf/peak_mem_mb": 900.0})
            for i, (s, e) in enumerate(spans)]


GPU = gc.Plan.gpu_check(min_overlap_s=2.0)
SMOKE = gc.Plan.cpu_smoke(min_overlap_s=2.0)


def test_check_trials_passes_when_two_cuda_trials_ran_at_the_same_time():
    lines = gc.check_trials(_runs([(0, 30), (1, 31), (31, 60), (31.5, 61)]), GPU)
    assert lines[0].startswith("trials: 4 (mlf 2, lfmlf 2), all FINISHED, all on cuda")
    assert "at most 2 at once" in lines[1]


def test_check_trials_fails_when_the_trials_ran_one_after_the_other():
    runs = _runs([(0, 10), (10, 20), (20.5, 30), (30, 40)])
    with pytest.raises(gc.CheckFailed, match="no two trials shared the GPU"):
        gc.check_trials(runs, GPU)
    with pytest.raises(gc.CheckFailed, match="no two trials shared the GPU"):   # 1 s < min_overlap_s
        gc.check_trials(_runs([(0, 10), (9, 20), (20, 30), (29, 40)]), GPU)


def test_check_trials_fails_on_a_cpu_trial_a_missing_metric_or_a_missing_trial():
    runs = _runs([(0, 30), (1, 31), (31, 60), (31.5, 61)])
    cpu = [runs[0], gc.TrialRun(**{**runs[1].__dict__, "metrics": {"perf/cuda": 0.0}}), *runs[2:]]
    with pytest.raises(gc.CheckFailed, match="trained on cpu, not cuda"):
        gc.check_trials(cpu, GPU)
    silent = [runs[0], gc.TrialRun(**{**runs[1].__dict__, "metrics": {}}), *runs[2:]]
    with pytest.raises(gc.CheckFailed, match="no perf/cuda metric"):
        gc.check_trials(silent, GPU)
    with pytest.raises(gc.CheckFailed, match="lfmlf: 1 FINISHED trial run"):
        gc.check_trials(runs[:3], GPU)
    failed = runs[:3] + [gc.TrialRun(**{**runs[3].__dict__, "status": "FAILED"})]
    with pytest.raises(gc.CheckFailed, match="statuses: FINISHED, FAILED"):
        gc.check_trials(failed, GPU)


def test_the_smoke_plan_wants_cpu_trials_and_reports_the_overlap_without_requiring_it():
    runs = _runs([(0, 10), (12, 20)], cuda=0.0)[:1] + [gc.TrialRun(run_id="x" * 12, method="lfmlf",
                                                                   status="FINISHED", start=12, end=20,
                                                                   metrics={"perf/cuda": 0.0})]
    lines = gc.check_trials(runs, SMOKE)
    assert "all on cpu" in lines[0] and lines[1].startswith("overlap: no two cpu trials")
    with pytest.raises(gc.CheckFailed, match="trained on cuda, not cpu"):
        gc.check_trials(_runs([(0, 10), (12, 20)])[:1] + runs[1:], SMOKE)


# ------------------------------------------------------------------------------------------------ tables
def _step_cost_json(cuda: bool) -> dict:
    def row(median, ratio, qp, mem):
        return {"median": median, "ratio": ratio, "paired_ratio_median": ratio, "qp_params": qp,
                "peak_rss_mb": 3000.0, "peak_cuda_mb": mem if cuda else None}
    return {"results": {"xlmr-random": {"mlf": row(0.1, 1.0, None, 5000.0),
                                        "lfmlf-l2": row(0.15, 1.5, 277_460_000, 11000.0),
                                        "lfmlf-distill": row(0.25, 2.5, 277_460_000, 12500.0)}}}


def test_step_cost_table_prints_seconds_ratios_and_peak_gpu_memory():
    lines = gc.step_cost_table(_step_cost_json(cuda=True))
    assert "peak GPU MB" in lines[0]
    assert lines[2].split() == ["xlmr-random", "lfmlf-l2", "0.1500", "1.50", "1.50", "11000", "277.5M"]
    assert len(lines) == 4
    cpu = gc.step_cost_table(_step_cost_json(cuda=False))
    assert "peak RSS MB" in cpu[0] and cpu[1].split()[-2:] == ["3000", "-"]
    broken = _step_cost_json(cuda=True)
    del broken["results"]["xlmr-random"]["lfmlf-distill"]
    with pytest.raises(gc.CheckFailed, match="no result for lfmlf-distill"):
        gc.step_cost_table(broken)


def test_trial_table_has_one_row_per_trial():
    lines = gc.trial_table(_runs([(100, 130), (101, 131)]))
    assert len(lines) == 3 and lines[1].split()[:6] == ["mlf", "run0abcd", "FINISHED", "cuda", "0.0", "30.0"]


def test_a_failing_child_process_is_a_check_failure_with_its_log(tmp_path):
    log = tmp_path / "sweep.log"
    with pytest.raises(gc.CheckFailed, match=r"the sweep failed \(exit status 3\)(.|\n)*boom"):
        gc.run_logged([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log, os.environ, 60,
                      "the sweep")
    with pytest.raises(gc.CheckFailed, match="ran past 1 s"):
        gc.run_logged([sys.executable, "-c", "import time; time.sleep(30)"], log, os.environ, 1, "the sweep")


# ------------------------------------------------------------------------------------------------ sweep file
@pytest.mark.parametrize("plan", [GPU, SMOKE], ids=["gpu", "smoke"])
def test_the_sweep_file_is_a_valid_sweep(tmp_path, plan):
    from lfmlf.config import load_sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = tmp_path / "gpu_check.yaml"
    path.write_text(yaml.safe_dump(gc.sweep_config(plan, tmp_path, uri), sort_keys=False))
    cfg = load_sweep(path, [])
    assert set(cfg.methods) == {"mlf", "lfmlf"} and cfg.methods["lfmlf"].params == {"forgetting": "l2"}
    assert cfg.search.num_samples == plan.trials and cfg.search.max_concurrent == 4
    assert cfg.search.scheduler.name == "none"
    assert cfg.resources.gpu == plan.gpu and cfg.train.bf16 is True
    assert cfg.tracking.uri == uri and cfg.tracking.experiment == gc.EXPERIMENT
    assert cfg.model.name_or_path == "tiny"
    if plan is GPU:
        assert cfg.model.tiny.architecture == "xlm-roberta" and cfg.model.tiny.min_embedding_rows == 250002
        assert (cfg.model.tiny.hidden_size, cfg.model.tiny.layers, cfg.model.tiny.heads) == (768, 12, 12)


# ------------------------------------------------------------------------------------------------ the model
TEXTS = [f"das ist satz {i} und this is sentence {i} con palabras {i * 7}" for i in range(200)]


def test_the_tiny_model_can_take_xlm_roberta_shape_with_padded_embeddings():
    import torch
    from transformers import BertModel, XLMRobertaForMaskedLM, XLMRobertaModel

    from lfmlf.config import ModelConfig
    from lfmlf.models import load_encoder

    shape = {"architecture": "xlm-roberta", "hidden_size": 64, "layers": 2, "heads": 2,
             "min_embedding_rows": 3000}
    cfg = ModelConfig(tiny=shape, dropout=0.0)
    encoder, tokenizer, _ = load_encoder(cfg, TEXTS)
    assert type(encoder) is XLMRobertaModel
    assert len(tokenizer) < 3000 and encoder.get_input_embeddings().weight.shape == (3000, 64)
    assert encoder.config.intermediate_size == 256 and encoder.config.num_hidden_layers == 2
    assert encoder.config.max_position_embeddings == 512 + tokenizer.pad_token_id + 1   # XLM-R's 514
    batch = tokenizer(["this is sentence 3", "das ist"], return_tensors="pt", padding=True)
    assert encoder(**batch).last_hidden_state.shape[-1] == 64
    # theta0 is seeded: the same in every trial, and with or without the masked-LM head
    again, _, mlm = load_encoder(cfg, TEXTS, mlm_head=True)
    assert type(mlm) is XLMRobertaForMaskedLM and again is mlm.base_model
    first, second = encoder.state_dict(), again.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert mlm.get_output_embeddings().weight is again.get_input_embeddings().weight   # tied decoder
    # the tokenizer's vocabulary wins when it is larger than the minimum; the default stays BERT
    assert load_encoder(ModelConfig(tiny={**shape, "min_embedding_rows": 10}), TEXTS)[0] \
        .get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert type(load_encoder(ModelConfig(), TEXTS)[0]) is BertModel


def test_the_loop_logs_which_device_a_trial_trained_on():
    from lfmlf.loop import fit

    evaluations = list(fit(tiny_spec(train={"device": "cpu", "max_steps": 2, "eval_every": 2})))
    assert evaluations[-1].metrics["perf/cuda"] == 0.0


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_cpu_smoke_runs_the_whole_script(tmp_path):
    proc = _run("--cpu-smoke", timeout=600, LFMLF_CACHE_DIR=str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "OK  trials: 2 (mlf 1, lfmlf 1), all FINISHED, all on cpu" in out
    assert "OK  overlap:" in out
    for label in gc.STEP_COST_CONFIGS:
        assert f"tiny        {label}" in out
    assert "gpu_check: all checks passed" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA answer")
def test_step_cost_gpu_flag_without_cuda_says_so_and_times_nothing():
    """``step_cost.py --gpu`` (what the GPU check calls) on a machine without CUDA: exit 0, one line saying
    nothing was timed, and no child process built a model (it returns within seconds)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "step_cost.py"), "--models", "e5", "--gpu"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "no CUDA device here" in out.stdout and "nothing was timed" in out.stdout
    assert "s/step" not in out.stdout


def test_gpu_check_times_the_step_through_step_costs_gpu_flag():
    assert "--gpu" in GPU.step_cost_args and "--device" not in GPU.step_cost_args
