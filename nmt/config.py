"""Typed configuration: every default of the toolkit lives in this one file.

The dataclasses below are registered in Hydra's ConfigStore as ``base_config``;
``conf/config.yaml`` starts its defaults list with it, so every YAML file and every
command-line override is merged onto a *typed, closed* schema: an unknown key, a value
of the wrong type or a name outside a key's choices (the Enums of :mod:`nmt.config_choices`:
``model.cell``, ``train.precision``, ``decode.method`` ...) fails at composition, naming the
key (and the choices). Values of the right type that cannot work, alone or together, are
refused by :func:`validate` (:mod:`nmt.config_checks`) before any data is read.

Group options (``data=multi30k_en_fr``, ``model=lstm`` ...) are YAML files under
``conf/<group>/`` that list only what differs from these defaults. Keys that apply to one
task or one corpus only are grouped under it: ``data.local.*`` (data=local's files),
``data.held_out.*`` (the split cut out of tatoeba_en_fr), ``train.char_lm.*`` (the char LM's
batching); :data:`MOVED_KEYS` maps their old flat names to the new ones.
Required values are ``???`` (``MISSING``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from nmt.config_choices import (
    Arch,
    AttentionalVector,
    AttentionKind,
    BadUtf8,
    Bridge,
    Cell,
    DecodeMethod,
    Device,
    EmbeddingInit,
    Optimizer,
    PieceModel,
    Precision,
    Schedule,
    Subword,
    ValidMetric,
    VectorFormat,
    WeightInit,
)
from nmt.errors import ConfigError

# Fixed special ids, shared by the tokenizer, the model and search.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
WORD_START = "\u2581"  # sentencepiece's word-start mark "▁" (a piece of its own before some words)


@dataclass
class LocalDataConfig:
    """``data=local`` only: your own files, by path, per split: a source file and a target
    file (``*_src``, ``*_tgt``, line-aligned) or one TSV (``*_tsv``). Train and valid are
    required, test is optional. Grouped under ``data.local`` so that no other corpus shows
    (or can be confused by) paths it never reads."""

    train_src: str | None = None
    train_tgt: str | None = None
    train_tsv: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    valid_tsv: str | None = None
    test_src: str | None = None
    test_tgt: str | None = None
    test_tsv: str | None = None


@dataclass
class HeldOutConfig:
    """How validation and test splits are cut out of a corpus published as one file
    (``data=tatoeba_en_fr``; corpora with published splits and local files ignore it).
    "held_out": these are the pairs held out of training, grouped by source sentence."""

    seed: int = 1234  # the seed of the grouped split
    valid_size: int = 2000  # pairs in the validation split (at most)
    test_size: int = 5000  # pairs in the test split (at most)


@dataclass
class DataConfig:
    """Which corpus, where it comes from, and how training pairs are cleaned."""

    name: str = MISSING  # multi30k_en_fr | tatoeba_en_fr | tinyshakespeare | local
    src_lang: str = "en"
    tgt_lang: str = "fr"
    # A folder laid out like ../shared/data (multi30k/, tatoeba/, ...) that replaces the
    # download. The environment variable NMT_DATA_MIRROR is used when this is unset.
    mirror: str | None = None
    # Where downloads, tokenizers and encoded splits are cached (shared between runs).
    cache_dir: str = "${oc.env:NMT_CACHE_DIR,.nmt_cache}"
    # Cleaning of *training* pairs only (evaluation sets are never filtered or reordered).
    max_len: int = 100  # pieces, per side
    max_len_ratio: float = 3.0  # drop pairs whose piece-length ratio exceeds this
    on_bad_utf8: BadUtf8 = BadUtf8.error  # error | replace
    # Keep only the first N training pairs after cleaning (low-resource curves, smoke tests).
    train_limit: int | None = None
    # Evaluation split used for validation during training, and the test splits reported.
    valid_split: str = "val"
    test_splits: list[str] = field(default_factory=list)
    # Extra monolingual source-language text (used to pretrain word2vec/fastText vectors).
    use_mono: bool = False
    # Keys that apply to one kind of corpus only, each in its own group.
    local: LocalDataConfig = field(default_factory=LocalDataConfig)  # data=local's files
    held_out: HeldOutConfig = field(default_factory=HeldOutConfig)  # tatoeba_en_fr's split


@dataclass
class TokenizerConfig:
    """sentencepiece options (trained on training text only, cached by a hash of inputs)."""

    model_type: PieceModel = PieceModel.unigram  # unigram | bpe | char | word
    vocab_size: int = 8000
    joint: bool = True  # one model for both languages, or one per language
    character_coverage: float = 1.0
    # Sentences sampled for training sentencepiece (0 = all).
    input_sentence_size: int = 0
    # Restrict each side's vocabulary to the pieces seen in its own training side.
    restrict_vocab: bool = False


@dataclass
class ModelConfig:
    """The network. ``hidden_dim`` is the decoder size and the encoder's output size
    (a bidirectional encoder uses ``hidden_dim // 2`` per direction)."""

    arch: Arch = Arch.seq2seq  # seq2seq | char_lm
    cell: Cell = Cell.gru  # rnn | gru | lstm
    # none | bahdanau | luong_dot | luong_general | luong_concat
    attention: AttentionKind = AttentionKind.bahdanau
    input_feeding: bool = False
    # The attentional vector (the output feature) from the RNN state h and the context c:
    # tanh: tanh(W [h; c]) (Luong et al. 2015; JoeyNMT) | linear: W [h; c] + b (OpenNMT-py
    # and eole with MLP attention; from uniform init it learns faster, docs/performance.md)
    attentional_vector: AttentionalVector = AttentionalVector.tanh
    layers: int = 1
    bidirectional: bool = True
    emb_dim: int = 256
    hidden_dim: int = 256
    dropout: float = 0.2
    bridge: Bridge = Bridge.linear  # none | linear  (encoder final state -> decoder initial state)
    tie_embeddings: bool = False  # target embedding <-> output projection
    share_embeddings: bool = False  # source <-> target embedding (joint vocabulary only)
    init: WeightInit = WeightInit.uniform  # uniform | xavier
    init_scale: float = 0.1


@dataclass
class EmbeddingSideConfig:
    """How one side's embedding matrix starts."""

    init: EmbeddingInit = EmbeddingInit.random  # random | pretrained | file | word2vec | fasttext
    # init=pretrained: a registry vector set (nmt/data/vector_sets.py): glove_6b_50d (English)
    # | fr_core_news_md (French); setting it on a side left at init=random means pretrained.
    vectors: str | None = None
    path: str | None = None  # vectors file for init=file
    # glove | word2vec_text | word2vec_bin | fasttext_vec | fasttext_bin
    format: VectorFormat = VectorFormat.glove
    freeze: bool = False
    lowercase_fallback: bool = True
    # Vectors narrower/wider than model.emb_dim: false = a table of model.emb_dim (narrower
    # vectors get extra random columns, wider ones keep their top principal components);
    # true = a learned linear projection on a table of the vectors' width (GloVe 50d through
    # it learned far slower on Multi30k: recipes/multi30k_en_fr/README.md).
    project: bool = False
    # Pieces that are no whole word: none (random rows) | mean (frequency-weighted mean of
    # the vectors of the training words they occur in; tied with none in the Multi30k study).
    subword: Subword = Subword.none
    # Scale the vectors to the spread of the model's initial table (fastText's reach +-10).
    rescale: bool = True
    # Training with gensim (init=word2vec | fasttext).
    sg: bool = True  # skip-gram (True) or CBOW (False)
    window: int = 5
    min_count: int = 1
    epochs: int = 5
    seed: int = 1
    workers: int = 2


@dataclass
class EmbeddingsConfig:
    src: EmbeddingSideConfig = field(default_factory=EmbeddingSideConfig)
    tgt: EmbeddingSideConfig = field(default_factory=EmbeddingSideConfig)


@dataclass
class CharLMTrainConfig:
    """``model.arch=char_lm`` only (``train=char_lm``): truncated back-propagation through
    time. Translation batches by ``train.max_tokens``/``max_sentences`` instead, so these
    sit in their own group, ``train.char_lm``, rather than beside them."""

    bptt_len: int = 128  # characters per chunk (gradients stop at chunk borders)
    batch_size: int = 64  # parallel streams the text is cut into (per process)


@dataclass
class TrainConfig:
    device: Device = Device.auto  # auto | cpu | cuda
    # fp32 | bf16 | fp16 (autocast; fp16 uses a gradient scaler)
    precision: Precision = Precision.fp32
    threads: int = 0  # CPU intra-op threads (0 = number of cores)
    seed: int = 42
    # Stopping: whichever comes first (0 = no limit).
    max_steps: int = 0
    max_epochs: int = 20
    max_minutes: float = 0.0
    # Batching: a token budget (counting padding) or a sentence count.
    max_tokens: int = 4000
    max_sentences: int = 0
    accum_steps: int = 1
    # Objective and optimizer.
    label_smoothing: float = 0.1
    # Subword regularisation (Kudo 2018; unigram tokenizers): every epoch the training pairs
    # get a new segmentation drawn with P(segmentation)^alpha, seeded by (seed, epoch);
    # 0 = off (the fixed segmentation). subword_nbest: -1 = draw from every segmentation of
    # each word, n >= 2 = from its n best (nmt/data/subword_sampling.py).
    subword_alpha: float = 0.0
    subword_nbest: int = -1
    optimizer: Optimizer = Optimizer.adam  # adam | adamw | sgd
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    momentum: float = 0.9
    clip_norm: float = 5.0
    # Exponential moving average of the weights (0 = off; e.g. 0.999): validation, best.pt
    # and step_*.pt use the average (nmt/train/ema.py); last.pt keeps both for resuming.
    ema_decay: float = 0.0
    schedule: Schedule = Schedule.plateau  # constant | inverse_sqrt | plateau | cosine
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-5
    # cosine only: decay over whichever budget ends first, steps/epochs or train.max_minutes
    # when it is set (a time-budgeted run then ends at min_lr on any machine, but is no
    # longer bit-reproducible).
    decay_by_time: bool = False
    # Validation, early stopping, checkpoints.
    valid_every: int = 0  # steps (0 = at epoch ends only)
    valid_metric: ValidMetric = ValidMetric.bleu  # bleu | chrf | loss
    valid_beam_size: int = 1  # 1 = greedy
    valid_max_sentences: int = 0  # 0 = the whole validation set
    patience: int = 5  # validations without improvement before stopping (0 = never)
    keep_last: int = 2
    resume: bool = False
    log_every: int = 50  # steps between logged averages (metrics.jsonl, TensorBoard, log)
    # A progress line at least this often (seconds; 0 = off), also during validation, so a
    # slow run is never silent; console/log only (metrics.jsonl stays step-based).
    log_seconds: float = 30.0
    compile: bool = False
    char_lm: CharLMTrainConfig = field(default_factory=CharLMTrainConfig)


@dataclass
class DecodeConfig:
    method: DecodeMethod = DecodeMethod.beam  # beam | greedy | sample
    beam_size: int = 5
    length_penalty: float = 1.0  # GNMT alpha; 0 = raw log-probability
    length_normalize: bool = False  # divide by length instead of the GNMT penalty
    coverage_penalty: float = 0.0
    min_len: int = 0
    max_len_a: float = 1.5  # max output length = a * source length + b
    max_len_b: int = 10
    n_best: int = 1
    no_repeat_ngram_size: int = 0
    suppress_unk: bool = False
    # Decoding batch budget in source tokens, padding included, counting each beam (or
    # sample) as a copy of its source: beam 5 takes about 6000 / 5 = 1200 source tokens.
    max_tokens: int = 6000
    max_sentences: int = 0  # sentences per decoding batch (0 = only max_tokens limits it)
    # CPU processes decoding batches in parallel, one torch thread each (nmt.search.workers:
    # set it to the cores to use); 1 = batches one after the other in this process
    workers: int = 1
    # Or threads of this process decoding batches in parallel, sharing its torch threads
    # (nmt.search.threads; CTranslate2's inter_threads): set it to the cores to use
    batch_threads: int = 1
    # Lexical shortlist (nmt.search.shortlist): the output layer of each sentence cut to the
    # `shortlist` best target pieces of each of its source pieces (at most 100: the
    # checkpoint's lexical table) plus the `shortlist_frequent` most frequent ones; 0 = off
    shortlist: int = 0
    shortlist_frequent: int = 100
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 1


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    # Free text copied into logs and run folders.
    name: str = "nmt"


def register_configs() -> None:
    """Register the schema (idempotent); called by every entry point before Hydra runs."""
    ConfigStore.instance().store(name="base_config", node=Config)


def conf_dir() -> Path:
    """The folder holding ``config.yaml`` and the config groups.

    ``NMT_CONF_DIR`` wins; otherwise the ``conf/`` folder of the source checkout
    (``make install`` installs the package in editable mode).
    """
    env = os.environ.get("NMT_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "conf"
    return path


# Keys that moved into a group of the keys of one task or one corpus: old name -> new name.
# Checkpoints and run records written before are read through upgrade_plain; the old name
# on a command line is an unknown key whose message names the new one.
MOVED_KEYS = {
    **{
        f"data.{split}_{kind}": f"data.local.{split}_{kind}"
        for split in ("train", "valid", "test")
        for kind in ("src", "tgt", "tsv")
    },
    "data.split_seed": "data.held_out.seed",
    "data.valid_size": "data.held_out.valid_size",
    "data.test_size": "data.held_out.test_size",
    "train.bptt_len": "train.char_lm.bptt_len",
    "train.batch_size": "train.char_lm.batch_size",
}


def unknown_key_message(path: str) -> str:
    """The one line for an unknown key (``path`` dotted), naming the new key of a moved one."""
    moved = MOVED_KEYS.get(path)
    if path == "train.batch_size":  # translation never read it: point at what it does read
        return (
            f"unknown config key '{path}': translation batches by train.max_tokens or "
            f"train.max_sentences; the char LM's streams are {moved}"
        )
    if moved:
        return f"unknown config key '{path}': did you mean {moved}? (it moved; see nmt/config.py)"
    return f"unknown config key '{path}': check its spelling (see nmt/config.py)"


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema does not know (also those added with ``+key=...``).

    Raises:
        ConfigError: naming the first unknown key.
    """
    schema = OmegaConf.to_container(OmegaConf.structured(Config))

    def walk(node: Any, ref: dict, prefix: str) -> None:
        for key in node:
            path = f"{prefix}{key}"
            if key not in ref:
                raise ConfigError(unknown_key_message(path))
            if isinstance(ref[key], dict) and OmegaConf.is_dict(node._get_node(key)):
                walk(node[key], ref[key], path + ".")

    walk(cfg, schema, "")


def to_plain(cfg: DictConfig | Config) -> dict[str, Any]:
    """Resolved config as plain Python containers (for checkpoints and JSON): the choices
    are plain strings, which ``torch.load(weights_only=True)`` and ``json`` accept."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def from_plain(data: dict[str, Any]) -> DictConfig:
    """Rebuild a typed config from :func:`to_plain` output (unknown keys and values outside
    a key's choices still fail; the choices' strings become their Enum members; keys of
    :data:`MOVED_KEYS` written under their old names are read at their new places)."""
    data = upgrade_plain(data)
    base = OmegaConf.structured(Config)
    return OmegaConf.merge(base, data)  # type: ignore[return-value]


def upgrade_plain(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a plain config, e.g. an old checkpoint's or run record's) as this version
    writes it: each key of :data:`MOVED_KEYS` at its new place, ``train.optimizer`` lowercased;
    ``data`` itself is not changed."""
    out = dict(data)
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if not isinstance(out.get(section), dict) or key not in out[section]:
            continue
        out[section] = dict(out[section])
        value = out[section].pop(key)
        *parents, leaf = new.split(".")
        node = out
        for part in parents:  # copied on the way down: nothing of ``data`` is changed
            node[part] = dict(node[part]) if isinstance(node.get(part), dict) else {}
            node = node[part]
        node.setdefault(leaf, value)  # a value already at the new place wins
    train = out.get("train")
    if isinstance(train, dict) and isinstance(train.get("optimizer"), str):
        # Matched without regard to case before it was a choice: "Adam" in old checkpoints.
        out["train"] = {**train, "optimizer": train["optimizer"].lower()}
    return out
