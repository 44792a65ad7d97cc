"""Encoder + task head, from a Hugging Face name, a local directory, or a tiny random model for tests.

The split between *pre-trained* parameters (the encoder) and the *new* task head matters to every
forgetting method: only the encoder has a pre-trained state to keep. :class:`TaskModel` makes that split
explicit, and the freezing options (word embeddings, bottom n layers) are applied here, once.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from lfmlf.config import ModelConfig
from lfmlf.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class ModelError(UserError, ValueError):
    """A model cannot be built or loaded; the message says why and what to do."""


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``module`` in eval mode (no dropout), then give every submodule back the training flag
    it had before, also on error. Evaluation, prediction, the forgetting probe and EWC's Fisher run inside it
    in the middle of training."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


@dataclass
class EncoderOutput:
    hidden: Tensor          # [B, T, H] last hidden states
    logits: Tensor          # task head output


class MissingMlmHead(ModelError):
    """The model has no pre-trained masked-LM head, and the configuration needs one."""


class TaskModel(nn.Module):
    """A pre-trained encoder and a task head. ``forward`` returns hidden states and logits.

    ``mlm`` (optional) is the Hugging Face masked-LM model whose base model *is* ``encoder`` (shared
    parameters): its pre-trained head stays frozen and only serves :meth:`mlm_loss`."""

    def __init__(self, encoder: PreTrainedModel, head: nn.Module, mlm: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.mlm = mlm   # registered after encoder and head: its shared parameters keep their encoder.* names

    def mlm_loss(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Masked-LM loss (mean over the masked positions, ``labels`` -100 elsewhere) through the frozen
        pre-trained head; called by the MLM objectives every step."""
        if self.mlm is None:
            raise MissingMlmHead("this model was built without its masked-LM head")
        return self.mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        labels=batch["labels"]).loss.float()

    def encode(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(**kwargs).last_hidden_state

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                token_type_ids: Tensor | None = None) -> EncoderOutput:
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return EncoderOutput(hidden=hidden, logits=self.head(hidden))

    def pretrained_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Trainable encoder parameters: the ones a forgetting objective protects."""
        return [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters() if p.requires_grad]

    def head_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Trainable task-head parameters: new, no pre-trained state."""
        return [(f"head.{n}", p) for n, p in self.head.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, Tensor]:
        """Only what training changes; frozen weights are rebuilt from the model source on resume."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def frozen_encoder_copy(self) -> nn.Module:
        """A frozen copy of the encoder as it is now (called at setup, i.e. at theta0)."""
        ref = copy.deepcopy(self.encoder).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref


def train_tokenizer(texts: Iterable[str], vocab_size: int):  # -> PreTrainedTokenizerFast
    """A subword tokenizer with XLM-R's conventions (``▁`` word markers, ``<s> ... </s>``) trained on
    ``texts``. BPE rather than Unigram: the Unigram trainer is not deterministic across runs, and theta0
    (hence every forgetting measure) must be identical in every trial of a sweep."""
    # lazy: tokenizers and transformers are slow to import, and the CLI's checks never train a tokenizer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=512)


def tokenizer_digest(tokenizer) -> str:
    """A content hash of a fast tokenizer (vocabulary, merges, normaliser, templates, special tokens),
    without the truncation and padding state that every ``tokenizer(..., truncation=True)`` call changes.
    The loop records it in every checkpoint: an exported model must carry exactly the tokenizer it was
    trained with, and the tiny model's is rebuilt (trained again) on export."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(f"{type(tokenizer).__name__} is not a fast tokenizer; lfmlf needs one (word ids)")
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    specials = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    blob = json.dumps([state, specials], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _tiny_classes(architecture: str):  # -> (config class, model class, masked-LM class)
    if architecture == "xlm-roberta":
        from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel  # lazy: slow import

        return XLMRobertaConfig, XLMRobertaModel, XLMRobertaForMaskedLM
    from transformers import BertConfig, BertForMaskedLM, BertModel  # lazy: slow import

    return BertConfig, BertModel, BertForMaskedLM


def _tiny_encoder(cfg: ModelConfig, vocab_size: int, pad_id: int) -> PreTrainedModel:
    t = cfg.tiny
    config_cls, model_cls, _ = _tiny_classes(t.architecture)
    shape = {"vocab_size": max(vocab_size, t.min_embedding_rows), "hidden_size": t.hidden_size,
             "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
             "intermediate_size": 4 * t.hidden_size, "max_position_embeddings": 512, "pad_token_id": pad_id,
             "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout}
    if t.architecture == "xlm-roberta":
        # XLM-R's own settings: positions count from pad_id + 1 (514 rows for 512 tokens), one token type,
        # LayerNorm eps 1e-5, <s> and </s> as in the tokenizer of train_tokenizer
        shape.update({"max_position_embeddings": 512 + pad_id + 1, "type_vocab_size": 1,
                      "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2})
    config = config_cls(**shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(t.seed)  # theta0 is the same in every trial and on resume
        return model_cls(config, add_pooling_layer=False)


def _tiny_mlm(encoder: PreTrainedModel, cfg: ModelConfig) -> PreTrainedModel:
    """A masked-LM model around the tiny encoder: same encoder weights as without a head (theta0 must not
    depend on the method), the head initialised from its own seed, decoder tied to the word embeddings."""
    _, _, mlm_cls = _tiny_classes(cfg.tiny.architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.tiny.seed + 1)
        mlm = mlm_cls(encoder.config)
    mlm.base_model.load_state_dict(encoder.state_dict())
    return mlm


def load_encoder(cfg: ModelConfig, texts: Iterable[str] | None = None, mlm_head: bool = False):
    """(encoder, tokenizer, masked-LM model or None). ``tiny`` trains a tokenizer on ``texts`` and
    initialises randomly with a fixed seed; anything else is a hub id or a local directory read with
    AutoModel / AutoModelForMaskedLM and AutoTokenizer. With ``mlm_head`` the encoder is the masked-LM
    model's base model and the head's own parameters are frozen; a model without a pre-trained head
    raises :class:`MissingMlmHead`."""
    mlm = None
    if cfg.name_or_path == "tiny":
        if texts is None:
            raise ModelError("the tiny model trains its tokenizer on the run's text; pass texts")
        tokenizer = train_tokenizer(texts, cfg.tiny.vocab_size)
        encoder = _tiny_encoder(cfg, len(tokenizer), tokenizer.pad_token_id)
        if mlm_head:
            mlm = _tiny_mlm(encoder, cfg)
            encoder = _base_model(mlm)
    else:
        # lazy: transformers is slow to import
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path, revision=cfg.revision)
            config = AutoConfig.from_pretrained(cfg.name_or_path, revision=cfg.revision,
                                                hidden_dropout_prob=cfg.dropout,
                                                attention_probs_dropout_prob=cfg.dropout)
            if mlm_head:
                mlm, info = AutoModelForMaskedLM.from_pretrained(cfg.name_or_path, revision=cfg.revision, config=config,
                                                                 dtype=torch.float32, output_loading_info=True)
                prefix = mlm.base_model_prefix + "."
                missing = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))
                if missing:
                    raise MissingMlmHead(f"model '{cfg.name_or_path}' has no pre-trained masked-LM head "
                                         f"(missing weights: {', '.join(missing[:3])}...)")
                encoder = _base_model(mlm)
            else:
                encoder = AutoModel.from_pretrained(cfg.name_or_path, revision=cfg.revision, config=config,
                                                    dtype=torch.float32, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"cannot load model '{cfg.name_or_path}': {e}. Fix: give a local Hugging Face "
                             "directory, or a hub id on a machine with internet access.") from None
    freeze(encoder, cfg.freeze_embeddings, cfg.freeze_layers)
    if mlm is not None:
        in_encoder = {id(p) for p in encoder.parameters()}
        for p in mlm.parameters():
            if id(p) not in in_encoder:   # the head's own weights; the tied decoder is the embedding matrix
                p.requires_grad_(False)
    return encoder, tokenizer, mlm


def _base_model(mlm: PreTrainedModel) -> PreTrainedModel:
    """The encoder inside a Hugging Face masked-LM model (typed there as a plain ``nn.Module``)."""
    from transformers import PreTrainedModel  # lazy: slow import (the caller has loaded transformers already)

    base = mlm.base_model
    assert isinstance(base, PreTrainedModel), f"{type(mlm).__name__}.base_model is a {type(base).__name__}"
    return base


def has_mlm_head(path: str) -> bool | None:
    """Whether a local model directory holds pre-trained masked-LM head weights, told without loading it:
    True when the checkpoint has head weights (``cls.``, ``lm_head.``, ... keys); False only when it has
    none *and* its config.json names no masked-LM or pre-training architecture (a plain encoder such as
    the e5 build); None when that cannot be told (a hub id, another checkpoint format), which leaves the
    check to loading time."""
    if path == "tiny":
        return True
    folder = Path(path)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open  # lazy: only a local checkpoint is read

    heads = ("cls.", "lm_head.", "vocab_", "generator_", "mlm.", "predictions.")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            if any(k.split(".", 1)[-1].startswith(heads) or k.startswith(heads) for k in st.keys()):
                return True
    try:
        architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return None
    if any("MaskedLM" in a or "PreTraining" in a for a in architectures):
        return None   # a head under an unfamiliar name: loading will tell
    return False


def _layers(encoder: nn.Module) -> list[nn.Module]:
    for path in ("encoder.layer", "layers", "transformer.layer", "encoder.layers"):
        node: object = encoder
        for attr in path.split("."):
            node = getattr(node, attr, None)
        if isinstance(node, nn.ModuleList):
            return list(node)
    raise ModelError(f"cannot find the transformer layers of {type(encoder).__name__} to freeze")


def freeze(encoder: PreTrainedModel, embeddings: bool, bottom_layers: int) -> None:
    """Freeze the word embeddings and/or the bottom ``bottom_layers`` transformer layers in place."""
    if embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    if bottom_layers:
        layers = _layers(encoder)
        if bottom_layers > len(layers):
            raise ModelError(f"freeze_layers={bottom_layers} but the encoder has {len(layers)} layers")
        for layer in layers[:bottom_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
