"""Transformer language models as per-layer workloads: BERT pretraining and GPT-2.

Each builder walks the model the way its PyTorch ``forward`` runs in training mode with
eager attention (Hugging Face ``BertForPreTraining`` and ``GPT2LMHeadModel``, whose
module names the layers carry) and emits one :class:`~models.workloads.Layer` per kernel:
embedding lookups, linear layers, the two attention matmuls of two activations
(``Q K^T`` and ``softmax(.) V``, kind ``matmul``), softmax, layer norms, GELU, dropout,
residual adds and the copy that merges the heads. Everything is computed from the
architecture's hyperparameters; nothing is a typed-in total.

Left out, as they launch no kernel or move next to nothing: views and permutes that
``matmul`` reads with strides (splitting heads), the copies ``torch.matmul`` may make of
permuted operands, slicing the first token for the pooler, the next-sentence loss over
two logits, the attention-mask preparation done once per batch. The language-model
loss is kept: over a 30-50 k vocabulary its log-softmax reads and writes a tensor as
large as the logits. Fused attention (FlashAttention, ``scaled_dot_product_attention``)
would replace the matmul-softmax-matmul chain by one kernel that never writes the
``heads x S x S`` scores; these workloads describe the unfused computation.

Tied weights: BERT's MLM decoder and GPT-2's ``lm_head`` share the token-embedding
matrix. Their GEMM FLOPs count in full, but the weight's parameters (and so its
gradient bytes and optimizer update) are counted once, on the embedding layer. BERT's
decoder keeps its own output bias (``cls.predictions.bias``, vocab-sized), which is
counted.

FLOP conventions, per sample (one multiply-add is 2 FLOP; a transcendental such as
``exp``, ``erf`` or ``tanh`` counts as one):

- linear: ``2*tokens*in*out``, plus one add per output element for the bias.
- attention matmuls: ``2*heads*S*S*head_dim`` each.
- layer norm: :data:`LAYER_NORM_FLOPS_PER_ELEMENT`; softmax:
  :data:`SOFTMAX_FLOPS_PER_ELEMENT`; GELU: :data:`GELU_ERF_FLOPS_PER_ELEMENT` (BERT) or
  :data:`GELU_TANH_FLOPS_PER_ELEMENT` (GPT-2's ``gelu_new``), counted as one kernel.
- dropout: :data:`~models.architectures.cnn.DROPOUT_FLOPS_PER_ELEMENT`; residual add,
  score scaling and masking: one per element; head merge: a copy, 0 FLOP.
- embedding lookup: a gather, 0 FLOP; its input is the token ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from models.architectures.cnn import DROPOUT_FLOPS_PER_ELEMENT
from models.errors import require_int
from models.workloads import Layer, Workload

#: Row statistics (sum and sum of squares: 3 FLOP), ``(x - mean) * rstd`` (2) and the
#: per-feature affine ``* gamma + beta`` (2): unlike batch norm, gamma cannot be folded
#: into the per-row scale.
LAYER_NORM_FLOPS_PER_ELEMENT = 7
#: Row max, subtract, exp, row sum, divide.
SOFTMAX_FLOPS_PER_ELEMENT = 5
#: ``0.5 * x * (1 + erf(x / sqrt(2)))``.
GELU_ERF_FLOPS_PER_ELEMENT = 5
#: ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``.
GELU_TANH_FLOPS_PER_ELEMENT = 9


@dataclass(frozen=True)
class TransformerConfig:
    """The hyperparameters that fix a model's shapes."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class Stack:
    """Appends the kernels of a sequence model in forward order, per sample."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def _emit(self, layer: Layer) -> None:
        self.layers.append(layer)

    def embedding(self, name: str, rows: int, width: int, tokens: int) -> None:
        self._emit(Layer(name=name, kind="embedding", params=rows * width, forward_flops=0,
                         input_elements=tokens, output_elements=tokens * width))

    def linear(self, name: str, tokens: int, in_features: int, out_features: int, *,
               bias: bool = True, tied_weight: bool = False) -> None:
        """``tied_weight``: the weight is another layer's, counted there."""
        bias_elements = tokens * out_features if bias else 0
        self._emit(Layer(
            name=name, kind="linear",
            params=(0 if tied_weight else in_features * out_features)
            + (out_features if bias else 0),
            forward_flops=2 * tokens * in_features * out_features + bias_elements,
            input_elements=tokens * in_features, output_elements=tokens * out_features,
            gemm=(tokens, out_features, in_features),
        ))

    def matmul(self, name: str, heads: int, m: int, n: int, k: int,
               input_elements: int) -> None:
        """A batched product of two activations: ``heads`` independent ``(m, k) x (k, n)``
        GEMMs per sample, recorded as one ``(heads*m, n, k)`` GEMM of the same FLOP."""
        self._emit(Layer(name=name, kind="matmul", params=0,
                         forward_flops=2 * heads * m * n * k,
                         input_elements=input_elements, output_elements=heads * m * n,
                         gemm=(heads * m, n, k)))

    def elementwise(self, name: str, elements: int, flops_per_element: int, *,
                    kind: str = "elementwise", input_elements: int | None = None) -> None:
        self._emit(Layer(name=name, kind=kind, params=0,
                         forward_flops=flops_per_element * elements,
                         input_elements=elements if input_elements is None else input_elements,
                         output_elements=elements))

    def add(self, name: str, elements: int) -> None:
        self.elementwise(name, elements, 1, input_elements=2 * elements)

    def dropout(self, name: str, elements: int) -> None:
        self.elementwise(name, elements, DROPOUT_FLOPS_PER_ELEMENT)

    def activation(self, name: str, elements: int, flops_per_element: int) -> None:
        self.elementwise(name, elements, flops_per_element, kind="activation")

    def softmax(self, name: str, elements: int) -> None:
        self.elementwise(name, elements, SOFTMAX_FLOPS_PER_ELEMENT, kind="softmax")

    def layer_norm(self, name: str, tokens: int, width: int) -> None:
        elements = tokens * width
        self._emit(Layer(name=name, kind="norm", params=2 * width,
                         forward_flops=LAYER_NORM_FLOPS_PER_ELEMENT * elements,
                         input_elements=elements, output_elements=elements))

    def attention_core(self, prefix: str, seq_len: int, config: TransformerConfig, *,
                       causal: bool, dropout: str) -> None:
        """Scores, scaling, mask, softmax, dropout, weighted values, head merge.

        ``causal``: GPT-2's ``torch.where`` against its lower-triangular buffer; else
        BERT's additive padding mask, broadcast over heads and query positions.
        """
        s, d, heads = seq_len, config.hidden, config.heads
        scores = heads * s * s
        self.matmul(f"{prefix}.scores", heads, s, s, config.head_dim, input_elements=2 * s * d)
        self.elementwise(f"{prefix}.scale", scores, 1)
        self.elementwise(f"{prefix}.mask", scores, 1,
                         input_elements=scores + (s * s if causal else s))
        self.softmax(f"{prefix}.softmax", scores)
        self.dropout(f"{prefix}.{dropout}", scores)
        self.matmul(f"{prefix}.context", heads, s, config.head_dim, s,
                    input_elements=scores + s * d)
        self.elementwise(f"{prefix}.merge_heads", s * d, 0)


# --- BERT ---------------------------------------------------------------------------

#: Devlin et al. 2019, sec. 3: BERT-base L=12, H=768, A=12; BERT-large L=24, H=1024,
#: A=16; feed-forward 4H; WordPiece vocabulary of 30,522 (the uncased models' vocab.txt,
#: ``vocab_size`` in their bert_config.json); 512 positions; 2 segment types.
BERT_CONFIGS = {
    "bert-base": TransformerConfig(layers=12, hidden=768, heads=12, intermediate=3072,
                                   vocab=30522, max_positions=512),
    "bert-large": TransformerConfig(layers=24, hidden=1024, heads=16, intermediate=4096,
                                    vocab=30522, max_positions=512),
}
BERT_TYPE_VOCAB = 2
#: Masked positions per sequence the MLM head runs on (``max_predictions_per_seq``):
#: phase 1 (128 tokens) 20, phase 2 (512 tokens) 80 (NVIDIA DeepLearningExamples
#: PyTorch/LanguageModeling/BERT README, glossary; google-research/bert's README runs
#: 128 tokens with 20). Google's run_pretraining.py gathers these positions before the
#: head (``gather_indexes``), as NVIDIA's recent modeling.py does
#: (``sequence_output_is_dense``); Hugging Face's ``BertForPreTraining`` and older
#: NVIDIA releases run the head on every position (``masked_positions=seq_len``).
BERT_MAX_PREDICTIONS = {128: 20, 512: 80}
#: Share of tokens masked (Devlin et al. 2019, sec. 3.1), for other sequence lengths.
BERT_MASKED_LM_PROB = 0.15

BERT_DATASET = "wikipedia+bookcorpus"
#: Devlin et al. 2019, sec. 3.1: BooksCorpus (800M words) and English Wikipedia (2,500M
#: words). App. A.2 counts 256 x 512 = 128,000 tokens a batch over 1,000,000 steps as
#: "approximately 40 epochs over the 3.3 billion word corpus", i.e. a token per word; the
#: number of samples is the corpus in sequences of the sample length on that footing.
BERT_CORPUS_WORDS = 3_300_000_000


def bert_masked_positions(seq_len: int) -> int:
    return BERT_MAX_PREDICTIONS.get(seq_len, math.ceil(BERT_MASKED_LM_PROB * seq_len))


def _bert_layer(net: Stack, prefix: str, s: int, config: TransformerConfig) -> None:
    d, ff = config.hidden, config.intermediate
    attention = f"{prefix}.attention"
    for projection in ("query", "key", "value"):
        net.linear(f"{attention}.self.{projection}", s, d, d)
    net.attention_core(f"{attention}.self", s, config, causal=False,
                       dropout="dropout")
    net.linear(f"{attention}.output.dense", s, d, d)
    net.dropout(f"{attention}.output.dropout", s * d)
    net.add(f"{attention}.output.add", s * d)
    net.layer_norm(f"{attention}.output.LayerNorm", s, d)
    net.linear(f"{prefix}.intermediate.dense", s, d, ff)
    net.activation(f"{prefix}.intermediate.gelu", s * ff, GELU_ERF_FLOPS_PER_ELEMENT)
    net.linear(f"{prefix}.output.dense", s, ff, d)
    net.dropout(f"{prefix}.output.dropout", s * d)
    net.add(f"{prefix}.output.add", s * d)
    net.layer_norm(f"{prefix}.output.LayerNorm", s, d)


def bert(size: str, seq_len: int = 512, masked_positions: int | None = None) -> Workload:
    """BERT pretraining (masked LM and next-sentence prediction) on ``seq_len`` tokens.

    The encoder is Hugging Face's ``BertModel`` with its pooler; the heads are
    ``BertPreTrainingHeads`` (MLM transform, tied decoder with its own bias, NSP
    classifier), run on ``masked_positions`` gathered positions (default
    :func:`bert_masked_positions`).
    """
    config = BERT_CONFIGS[size]
    s = require_int("seq_len", seq_len, minimum=1, maximum=config.max_positions)
    p = bert_masked_positions(s) if masked_positions is None else require_int(
        "masked_positions", masked_positions, minimum=1, maximum=s)
    d, v = config.hidden, config.vocab
    net = Stack()
    emb = "bert.embeddings"
    net.embedding(f"{emb}.word_embeddings", v, d, s)
    net.embedding(f"{emb}.token_type_embeddings", BERT_TYPE_VOCAB, d, s)
    net.add(f"{emb}.add_token_type", s * d)
    net.embedding(f"{emb}.position_embeddings", config.max_positions, d, s)
    net.add(f"{emb}.add_position", s * d)
    net.layer_norm(f"{emb}.LayerNorm", s, d)
    net.dropout(f"{emb}.dropout", s * d)
    for index in range(config.layers):
        _bert_layer(net, f"bert.encoder.layer.{index}", s, config)
    net.linear("bert.pooler.dense", 1, d, d)
    net.activation("bert.pooler.tanh", d, 1)
    # MLM head on the masked positions only: gather them (a copy), then transform.
    net.elementwise("cls.predictions.gather", p * d, 0)
    net.linear("cls.predictions.transform.dense", p, d, d)
    net.activation("cls.predictions.transform.gelu", p * d, GELU_ERF_FLOPS_PER_ELEMENT)
    net.layer_norm("cls.predictions.transform.LayerNorm", p, d)
    net.linear("cls.predictions.decoder", p, d, v, tied_weight=True)
    net.softmax("cls.predictions.loss", p * v)
    net.linear("cls.seq_relationship", 1, d, 2)
    suffix = "" if s == 512 else f"-seq{s}"
    layers_name = "Base" if size == "bert-base" else "Large"
    return Workload(
        id=f"{size}{suffix}", name=f"BERT-{layers_name} ({s} tokens)",
        task="masked-language-modeling", layers=tuple(net.layers), sample_shape=(s,),
        dataset=BERT_DATASET, dataset_samples=BERT_CORPUS_WORDS // s,
        source="Devlin, Chang, Lee, Toutanova 2019, BERT: Pre-training of Deep "
               "Bidirectional Transformers for Language Understanding (NAACL, arXiv "
               "1810.04805), sec. 3.1 and App. A.2; Hugging Face transformers "
               f"BertForPreTraining (bert-{size.split('-')[1]}-uncased), MLM head on "
               f"{p} masked positions",
    )


# --- GPT-2 --------------------------------------------------------------------------

#: Radford et al. 2019, Table 2 (layers, d_model) and the released hparams.json of each
#: model (n_head, n_ctx 1024, n_vocab 50,257); feed-forward 4 d_model.
GPT2_CONFIGS = {
    "gpt2": TransformerConfig(layers=12, hidden=768, heads=12, intermediate=3072,
                              vocab=50257, max_positions=1024),
    "gpt2-medium": TransformerConfig(layers=24, hidden=1024, heads=16, intermediate=4096,
                                     vocab=50257, max_positions=1024),
    "gpt2-large": TransformerConfig(layers=36, hidden=1280, heads=20, intermediate=5120,
                                    vocab=50257, max_positions=1024),
    "gpt2-xl": TransformerConfig(layers=48, hidden=1600, heads=25, intermediate=6400,
                                 vocab=50257, max_positions=1024),
}
GPT2_NAMES = {"gpt2": "GPT-2 (124M)", "gpt2-medium": "GPT-2 Medium (355M)",
              "gpt2-large": "GPT-2 Large (774M)", "gpt2-xl": "GPT-2 XL (1.5B)"}

#: WebText (Radford et al. 2019, sec. 2.1: "slightly over 8 million documents for a
#: total of 40 GB of text") was never released; OpenWebText (Gokaslan & Cohen 2019) is
#: its open reproduction: 8,013,769 documents, whose training split is 9,035,582,198
#: GPT-2 BPE tokens (karpathy/nanoGPT, data/openwebtext/prepare.py and readme.md).
GPT2_DATASET = "openwebtext"
OPENWEBTEXT_TRAIN_TOKENS = 9_035_582_198


def _gpt2_block(net: Stack, prefix: str, s: int, config: TransformerConfig) -> None:
    d, ff = config.hidden, config.intermediate
    net.layer_norm(f"{prefix}.ln_1", s, d)
    net.linear(f"{prefix}.attn.c_attn", s, d, 3 * d)
    net.attention_core(f"{prefix}.attn", s, config, causal=True,
                       dropout="attn_dropout")
    net.linear(f"{prefix}.attn.c_proj", s, d, d)
    net.dropout(f"{prefix}.attn.resid_dropout", s * d)
    net.add(f"{prefix}.add_attn", s * d)
    net.layer_norm(f"{prefix}.ln_2", s, d)
    net.linear(f"{prefix}.mlp.c_fc", s, d, ff)
    net.activation(f"{prefix}.mlp.act", s * ff, GELU_TANH_FLOPS_PER_ELEMENT)
    net.linear(f"{prefix}.mlp.c_proj", s, ff, d)
    net.dropout(f"{prefix}.mlp.dropout", s * d)
    net.add(f"{prefix}.add_mlp", s * d)


def gpt2(size: str, seq_len: int = 1024) -> Workload:
    """GPT-2 language-model training on ``seq_len`` tokens (Hugging Face
    ``GPT2LMHeadModel``: pre-norm blocks, final ``ln_f``, ``lm_head`` tied to ``wte``;
    every position is predicted)."""
    config = GPT2_CONFIGS[size]
    s = require_int("seq_len", seq_len, minimum=1, maximum=config.max_positions)
    d, v = config.hidden, config.vocab
    net = Stack()
    net.embedding("transformer.wte", v, d, s)
    net.embedding("transformer.wpe", config.max_positions, d, s)
    net.add("transformer.add_position", s * d)
    net.dropout("transformer.drop", s * d)
    for index in range(config.layers):
        _gpt2_block(net, f"transformer.h.{index}", s, config)
    net.layer_norm("transformer.ln_f", s, d)
    net.linear("lm_head", s, d, v, bias=False, tied_weight=True)
    net.softmax("loss", s * v)
    suffix = "" if s == config.max_positions else f"-seq{s}"
    return Workload(
        id=f"{size}{suffix}", name=GPT2_NAMES[size], task="language-modeling",
        layers=tuple(net.layers), sample_shape=(s,), dataset=GPT2_DATASET,
        dataset_samples=OPENWEBTEXT_TRAIN_TOKENS // s,
        source="Radford, Wu, Child, Luan, Amodei, Sutskever 2019, Language Models are "
               "Unsupervised Multitask Learners (OpenAI), Table 2; Hugging Face "
               f"transformers GPT2LMHeadModel ({size}); OpenWebText token count from "
               "karpathy/nanoGPT data/openwebtext/prepare.py",
    )


BUILDERS: dict[str, Callable[[], Workload]] = {
    "bert-base": partial(bert, "bert-base", 512),
    "bert-large": partial(bert, "bert-large", 512),
    "bert-base-seq128": partial(bert, "bert-base", 128),
    "bert-large-seq128": partial(bert, "bert-large", 128),
    **{size: partial(gpt2, size) for size in GPT2_CONFIGS},
}
