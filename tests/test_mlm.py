"""Masked-LM objectives: multi-task MLM (``mtl_mlm``) and LF-MLF's ``mlm`` forgetting. The MLM head is the
model's own pre-trained one, frozen; a model without one is a clear error naming what works instead;
unlabelled text comes from the task's source text or from plain-text files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lfmlf.checks import load_checked
from lfmlf.config import ConfigError, ModelConfig, UnlabelledConfig
from lfmlf.data.base import DataError
from lfmlf.data.unlabelled import UnlabelledText, read_lines
from lfmlf.forgetting import MlmForgetting
from lfmlf.loop import build, build_unlabelled, fit
from lfmlf.methods.base import StepObjectives
from lfmlf.models import MissingMlmHead, has_mlm_head, load_encoder, train_tokenizer
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec

TEXTS = ["der Hund läuft schnell nach Hause", "the dog runs home quickly", "el perro corre a casa",
         "le chien court vite à la maison"] * 20
CPU = torch.device("cpu")


def _objectives(task, model, spec, unlabelled, n=4):
    batches = {lang: collate(list(task.train_examples(lang)[:n]), task.pad_id) for lang in spec.sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    return StepObjectives(task={k: o[0] for k, o in outs.items()}, hidden={k: o[1] for k, o in outs.items()},
                          batches=batches, sizes={k: n for k in spec.sources}, grad_scale=1.0,
                          unlabelled=None if unlabelled is None else unlabelled.batch(CPU))


def test_tiny_theta0_does_not_depend_on_the_mlm_head_and_the_head_is_frozen_and_tied():
    cfg = ModelConfig(name_or_path="tiny")
    plain, _, none = load_encoder(cfg, TEXTS)
    encoder, _, mlm = load_encoder(cfg, TEXTS, mlm_head=True)
    assert none is None and mlm is not None and mlm.base_model is encoder
    a, b = plain.state_dict(), encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    emb = encoder.get_input_embeddings().weight
    assert mlm.get_output_embeddings().weight is emb and emb.requires_grad
    own = [p for p in mlm.parameters() if all(p is not q for q in encoder.parameters())]
    assert own and not any(p.requires_grad for p in own)


def _save_local_model(folder: Path, with_head: bool) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertModel

    tok = train_tokenizer(TEXTS, 300)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, pad_token_id=tok.pad_token_id)
    (BertForMaskedLM(config) if with_head else BertModel(config, add_pooling_layer=False)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_local_model_with_an_mlm_head_loads_it(tmp_path):
    path = _save_local_model(tmp_path / "with", with_head=True)
    assert has_mlm_head(str(path)) is True
    encoder, tok, mlm = load_encoder(ModelConfig(name_or_path=str(path)), mlm_head=True)
    assert mlm is not None and mlm.base_model is encoder


def test_a_model_without_an_mlm_head_is_a_clear_error_at_build_and_at_config_load(tmp_path):
    path = _save_local_model(tmp_path / "headless", with_head=False)
    assert has_mlm_head(str(path)) is False
    # a config that names a masked-LM architecture: the key names cannot tell, so loading decides
    odd = _save_local_model(tmp_path / "odd", with_head=False)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    assert has_mlm_head(str(odd)) is None
    spec = tiny_spec("mtl_mlm", model={"name_or_path": str(path)})
    with pytest.raises(MissingMlmHead, match=r"no pre-trained masked-LM head.*mtl_mlm.*Fix:.*mlf.*distill"):
        build(spec, CPU)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: x\nmodel: {{name_or_path: {path}}}\ntask: {{name: ner, format: synthetic}}\n"
                     "languages: {sources: [de, en], targets: [fr]}\ntrain: {max_steps: 4, eval_every: 2}\n"
                     "methods: {mlf: {}, lfmlf: {space: {forgetting: {type: categorical, "
                     "choices: [l2, mlm]}}}}\n")
    with pytest.raises(ConfigError, match=r"lfmlf need\(s\) a masked-LM head.*has none.*Fix:.*pcgrad"):
        load_checked(sweep)
    # the same sweep without the MLM choice is fine
    sweep.write_text(sweep.read_text().replace("[l2, mlm]", "[l2, distill]"))
    load_checked(sweep)


def test_masked_batches_follow_berts_recipe_and_never_mask_special_or_padding():
    tok = train_tokenizer(TEXTS, 300)
    cfg = UnlabelledConfig(batch_size=16, mlm_probability=0.15)
    stream = UnlabelledText(cfg, {"en": TEXTS[1::4], "de": TEXTS[0::4]}, tok, seed=0, masked=True)
    torch.manual_seed(0)
    masked = total = as_mask = 0
    special = set(tok.all_special_ids)
    for _ in range(40):
        b = stream.batch(CPU)
        lab = b["labels"]
        pos = lab != -100
        assert not any(int(t) in special for t in lab[pos])            # only real tokens are targets
        assert (b["attention_mask"][pos] == 1).all()
        masked += int(pos.sum())
        # maskable tokens: the masked ones plus the unmasked ones that are not special or padding
        total += int(pos.sum()) + sum(int(x not in special) for x in b["input_ids"][~pos].tolist())
        as_mask += int((b["input_ids"][pos] == tok.mask_token_id).sum())
    assert 0.10 < masked / total < 0.20
    assert 0.7 < as_mask / masked < 0.9                                 # 80% become <mask>


def test_unlabelled_files_feed_the_stream_and_bad_files_are_clear_errors(tmp_path):
    f = tmp_path / "de.txt"
    f.write_text("Erster Satz.\n\nZweiter Satz.\n", encoding="utf-8")
    assert read_lines(f, None) == ["Erster Satz.", "Zweiter Satz."]
    with pytest.raises(DataError, match="does not exist.*Fix"):
        read_lines(tmp_path / "nope.txt", None)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no text"):
        read_lines(tmp_path / "empty.txt", None)
    # with files, distillation reads them; without, it uses the step's own source sub-batches
    spec = tiny_spec("distill", model={"dropout": 0.0})
    task, model, method = build(spec, CPU)
    assert build_unlabelled(spec, task, method) is None
    spec = spec.model_copy(update={"unlabelled": UnlabelledConfig(files={"de": str(f)}, batch_size=2)})
    task, model, method = build(spec, CPU)
    stream = build_unlabelled(spec, task, method)
    assert stream is not None and not stream.masked
    b = stream.batch(CPU)
    texts = {tok for row in b["input_ids"].tolist() for tok in row}
    assert tok_ids(task.tokenizer, "Erster Satz.") <= texts | tok_ids(task.tokenizer, "Zweiter Satz.")


def tok_ids(tok, text):
    return set(tok(text)["input_ids"])


def test_mlm_forgetting_value_and_gradient_are_the_mlm_loss_and_its_autograd_gradient():
    spec = tiny_spec("lfmlf", params={"forgetting": "mlm"}, model={"dropout": 0.0})
    task, model, method = build(spec, CPU)
    stream = build_unlabelled(spec, task, method)
    assert stream is not None and stream.masked
    obj = _objectives(task, model, spec, stream)
    value, g = method.forgetting.value_and_grad(model, obj)
    params = [p for _, p in model.pretrained_parameters()]
    loss = model.mlm_loss(obj.unlabelled)
    expect = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, params)])
    assert isinstance(method.forgetting, MlmForgetting)
    assert value == pytest.approx(loss.item(), rel=1e-6) and value > 0
    assert torch.allclose(g, expect, atol=1e-6)


def test_mtl_mlm_gradient_is_task_mean_plus_weighted_mlm():
    spec = tiny_spec("mtl_mlm", params={"weight": 0.5}, model={"dropout": 0.0})
    task, model, method = build(spec, CPU)
    stream = build_unlabelled(spec, task, method)
    torch.manual_seed(3)
    obj = _objectives(task, model, spec, stream)
    model.zero_grad()
    signals = method.backward(obj)
    got = [p.grad.clone() for _, p in model.pretrained_parameters()]
    model.zero_grad()
    obj2 = _objectives(task, model, spec, None)
    total = sum(obj2.task.values()) / len(obj2.task) + 0.5 * model.mlm_loss(obj.unlabelled)
    total.backward()
    want = [p.grad for _, p in model.pretrained_parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))
    assert signals["mtl_mlm/penalty"] == pytest.approx(model.mlm_loss(obj.unlabelled).item(), rel=1e-5)


def test_mtl_mlm_trial_resumes_exactly_with_its_unlabelled_stream():
    spec = tiny_spec("mtl_mlm")
    full = list(fit(spec))
    state = next(iter(fit(spec))).state()
    assert state["unlabelled"] is not None
    resumed = list(fit(spec, state))
    assert resumed[-1].metrics["mtl_mlm/penalty"] == pytest.approx(full[-1].metrics["mtl_mlm/penalty"], rel=1e-6)
    assert resumed[-1].metrics["source/f1/avg"] == pytest.approx(full[-1].metrics["source/f1/avg"], rel=1e-6)
