"""Transformer workloads against published parameter counts and Kaplan et al.'s FLOP count.

Published parameter counts:

- BertModel (embeddings, encoder, pooler) of the uncased checkpoints and GPT2Model /
  GPT2LMHeadModel (tied head): the ``"params"`` of each preset in keras-team/keras-hub,
  keras_hub/src/models/bert/bert_presets.py (bert_base_en_uncased 109,482,240;
  bert_large_en_uncased 335,141,888) and keras_hub/src/models/gpt2/gpt2_presets.py
  (gpt2_base_en 124,439,808; gpt2_medium_en 354,823,168; gpt2_large_en 774,030,080;
  gpt2_extra_large_en 1,557,611,200; GPT-2's tied head adds no parameters).
- The whole pretraining checkpoint of bert-base-uncased (BertForPreTraining: the above
  plus the MLM transform, decoder bias and NSP classifier, the decoder weight being the
  tied word embedding): 110,106,428 F32 parameters in its model.safetensors
  (huggingface/huggingface.js, packages/hub/src/lib/parse-safetensors-metadata.spec.ts).

FLOPs: Kaplan et al. 2020, Scaling Laws for Neural Language Models (arXiv 2001.08361),
Table 1, per token: QKV 2 n_layer d_model 3 d_attn, attention "mask" (Q K^T)
2 n_layer n_ctx d_attn, projection 2 n_layer d_attn d_model, feed-forward
2 n_layer 2 d_model d_ff (their sum: 2N, N = 2 d_model n_layer (2 d_attn + d_ff)),
de-embed 2 d_model n_vocab. ``C_forward = 2N + 2 n_layer n_ctx d_attn`` leaves out the
de-embedding and lists only Q K^T among the context-dependent products; the weighted sum
of the values (softmax(.) V) costs the same again, and a dense implementation runs both.
"""

import pytest

from models import catalog, compute
from models.architectures import transformer
from models.architectures.transformer import (
    BERT_CONFIGS,
    GPT2_CONFIGS,
    bert,
    bert_masked_positions,
    gpt2,
)
from models.errors import ConfigError
from models.workloads import GRADIENT_BYTES_PER_PARAM, layer_table, workload, workloads

REQUIRED = ("bert-base", "bert-large", "gpt2", "gpt2-xl")

#: Encoder (BertModel with pooler) or whole model (GPT-2) parameters, keras-hub presets.
PUBLISHED_PARAMS = {
    "bert-base": 109_482_240,  # bert_base_en_uncased
    "bert-large": 335_141_888,  # bert_large_en_uncased
    "gpt2": 124_439_808,  # gpt2_base_en
    "gpt2-medium": 354_823_168,  # gpt2_medium_en
    "gpt2-large": 774_030_080,  # gpt2_large_en
    "gpt2-xl": 1_557_611_200,  # gpt2_extra_large_en
}
#: bert-base-uncased model.safetensors, all tensors (huggingface.js spec above).
BERT_BASE_UNCASED_CHECKPOINT_PARAMS = 110_106_428


def _config(workload_id):
    base = workload_id.split("-seq")[0]
    return BERT_CONFIGS.get(base) or GPT2_CONFIGS[base]


def _encoder_params(w):
    """Parameters outside the pretraining heads (BERT's ``cls.*``)."""
    return sum(layer.params for layer in w.layers if not layer.name.startswith("cls."))


def _head_tokens(w):
    s = w.sample_shape[0]
    return bert_masked_positions(s) if w.id.startswith("bert") else s


def test_catalog_lists_the_transformers():
    assert set(REQUIRED) <= set(workloads())
    assert set(transformer.BUILDERS) <= set(workloads())
    for workload_id, build in transformer.BUILDERS.items():
        assert build().id == workload_id


@pytest.mark.parametrize("workload_id", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_published(workload_id):
    published = PUBLISHED_PARAMS[workload_id]
    params = _encoder_params(workload(workload_id))
    assert params == pytest.approx(published, rel=0.01)
    # Exact: every weight, bias and layer-norm gamma/beta, tied matrices once.
    assert params == published


def test_bert_pretraining_checkpoint_counts_the_tied_decoder_once():
    w = workload("bert-base")
    assert w.params == BERT_BASE_UNCASED_CHECKPOINT_PARAMS
    d, v = 768, 30522
    # Heads: transform dense + LayerNorm, decoder bias only, NSP classifier.
    assert w.params - PUBLISHED_PARAMS["bert-base"] == (d * d + d) + 2 * d + v + (2 * d + 2)
    assert workload("bert-large").params - PUBLISHED_PARAMS["bert-large"] == (
        1024 * 1024 + 1024 + 2 * 1024 + v + 2 * 1024 + 2)
    layers = {layer.name: layer for layer in w.layers}
    decoder = layers["cls.predictions.decoder"]
    assert decoder.params == v
    assert decoder.gemm == (80, v, d)
    assert decoder.forward_flops == 2 * 80 * d * v + 80 * v
    assert layers["bert.embeddings.word_embeddings"].params == v * d


@pytest.mark.parametrize("workload_id", ["gpt2", "gpt2-xl"])
def test_gpt2_lm_head_is_tied(workload_id):
    w = workload(workload_id)
    config = _config(workload_id)
    layers = {layer.name: layer for layer in w.layers}
    assert w.params == PUBLISHED_PARAMS[workload_id]
    assert layers["lm_head"].params == 0
    assert layers["lm_head"].forward_flops == 2 * 1024 * config.hidden * config.vocab
    assert layers["transformer.wte"].params == config.vocab * config.hidden


@pytest.mark.parametrize("workload_id", sorted(transformer.BUILDERS))
def test_forward_flops_match_kaplan_table_1(workload_id):
    w = workload(workload_id)
    config = _config(workload_id)
    n_layer, d_model, d_attn, d_ff = (config.layers, config.hidden, config.hidden,
                                      config.intermediate)
    n_ctx = w.sample_shape[0]
    non_embedding = 2 * d_model * n_layer * (2 * d_attn + d_ff)
    layers = w.layers

    def gemm_flops(layer):
        m, n, k = layer.gemm
        return 2 * m * n * k

    blocks = [layer for layer in layers if ".layer." in layer.name or ".h." in layer.name]
    # QKV, projection and feed-forward GEMMs (biases aside): exactly 2N per token.
    assert sum(gemm_flops(layer) for layer in blocks if layer.kind == "linear") == (
        n_ctx * 2 * non_embedding)
    # Q K^T: Kaplan's 2 n_layer n_ctx d_attn per token; softmax(.) V: the same again.
    scores = [layer for layer in blocks if layer.name.endswith(".scores")]
    context = [layer for layer in blocks if layer.name.endswith(".context")]
    assert len(scores) == len(context) == n_layer
    assert sum(layer.forward_flops for layer in scores) == n_ctx * 2 * n_layer * n_ctx * d_attn
    assert sum(layer.forward_flops for layer in context) == (
        n_ctx * 2 * n_layer * n_ctx * d_attn)
    # De-embedding, 2 d_model n_vocab per predicted token.
    head = layers[[layer.name for layer in layers].index(
        "lm_head" if workload_id.startswith("gpt2") else "cls.predictions.decoder")]
    assert gemm_flops(head) == _head_tokens(w) * 2 * d_model * config.vocab
    # Everything: Kaplan's rows plus the values product; biases, norms, softmax, GELU,
    # dropout, residual adds and BERT's pooler/NSP/MLM transform stay within 1 %.
    closed_form = (n_ctx * (2 * non_embedding + 2 * 2 * n_layer * n_ctx * d_attn)
                   + _head_tokens(w) * 2 * d_model * config.vocab)
    assert w.forward_flops_per_sample == pytest.approx(closed_form, rel=0.01)
    assert w.forward_flops_per_sample > closed_form


def _attention_flops(w):
    return sum(layer.forward_flops for layer in w.layers if layer.name.endswith(".scores"))


def _block_linear_flops(w):
    return sum(layer.forward_flops for layer in w.layers
               if layer.kind == "linear" and (".layer." in layer.name or ".h." in layer.name))


@pytest.mark.parametrize(("build", "short", "long"), [
    (lambda s: bert("bert-large", s), 128, 512),
    (lambda s: bert("bert-base", s), 64, 256),
    (lambda s: gpt2("gpt2", s), 256, 1024),
    (lambda s: gpt2("gpt2-xl", s), 128, 512),
])
def test_attention_scores_scale_quadratically_with_sequence_length(build, short, long):
    a, b = build(short), build(long)
    ratio = long // short
    assert _attention_flops(b) == ratio**2 * _attention_flops(a)
    softmax = [sum(layer.output_elements for layer in w.layers if layer.name.endswith(".softmax"))
               for w in (a, b)]
    assert softmax[1] == ratio**2 * softmax[0]
    # The projections and the MLP are linear in the tokens.
    assert _block_linear_flops(b) == ratio * _block_linear_flops(a)


def test_layer_shapes_from_closed_forms():
    layers = {layer.name: layer for layer in workload("bert-base").layers}
    query = layers["bert.encoder.layer.0.attention.self.query"]
    assert query.gemm == (512, 768, 768)
    assert query.params == 768 * 768 + 768
    scores = layers["bert.encoder.layer.0.attention.self.scores"]
    assert scores.kind == "matmul" and scores.params == 0
    assert scores.gemm == (12 * 512, 512, 64)
    assert scores.output_elements == 12 * 512 * 512
    assert scores.input_elements == 2 * 512 * 768  # Q and K
    context = layers["bert.encoder.layer.0.attention.self.context"]
    assert context.input_elements == 12 * 512 * 512 + 512 * 768
    assert context.output_elements == 512 * 768
    assert layers["bert.encoder.layer.0.intermediate.dense"].gemm == (512, 3072, 768)
    assert layers["bert.encoder.layer.11.output.add"].input_elements == 2 * 512 * 768
    assert layers["bert.pooler.dense"].gemm == (1, 768, 768)
    assert layers["bert.embeddings.position_embeddings"].params == 512 * 768
    assert layers["bert.embeddings.word_embeddings"].input_elements == 512  # token ids
    kinds = [layer.kind for layer in layers.values()]
    # Per layer: Q, K, V, output, two MLP linears; then pooler, transform, decoder, NSP.
    assert kinds.count("linear") == 12 * 6 + 4
    assert kinds.count("matmul") == 2 * 12
    assert kinds.count("norm") == 1 + 2 * 12 + 1
    assert kinds.count("embedding") == 3

    layers = {layer.name: layer for layer in workload("gpt2-xl").layers}
    assert layers["transformer.h.0.attn.c_attn"].gemm == (1024, 3 * 1600, 1600)
    assert layers["transformer.h.47.attn.scores"].gemm == (25 * 1024, 1024, 64)
    # The causal mask reads the scores and the lower-triangular buffer.
    assert layers["transformer.h.0.attn.mask"].input_elements == 25 * 1024**2 + 1024**2
    assert layers["transformer.h.0.mlp.c_fc"].gemm == (1024, 6400, 1600)
    assert layers["lm_head"].gemm == (1024, 50257, 1600)
    assert layers["loss"].kind == "softmax" and layers["loss"].output_elements == 1024 * 50257


@pytest.mark.parametrize("workload_id", sorted(transformer.BUILDERS))
def test_dataset_and_sample_shape(workload_id):
    w = workload(workload_id)
    if workload_id.startswith("bert"):
        s = 128 if workload_id.endswith("-seq128") else 512
        assert (w.task, w.dataset) == ("masked-language-modeling", "wikipedia+bookcorpus")
        # Devlin et al. 2019: BooksCorpus 800M + English Wikipedia 2,500M words.
        assert w.dataset_samples == (800_000_000 + 2_500_000_000) // s
    else:
        s = 1024
        assert (w.task, w.dataset) == ("language-modeling", "openwebtext")
        assert w.dataset_samples == 9_035_582_198 // 1024
    assert w.sample_shape == (s,)
    assert w.layers[0].kind == "embedding" and w.layers[0].input_elements == s
    assert "arXiv" in w.source or "Radford" in w.source


@pytest.mark.parametrize("workload_id", REQUIRED)
def test_layer_table_and_times_run_at_several_batch_sizes(workload_id):
    w = workload(workload_id)
    gpu = catalog.gpu("a100-sxm4-80gb")
    for batch, precision in ((1, "fp32"), (8, "fp16"), (32, "bf16")):
        table = layer_table(w, batch, precision)
        assert list(table["name"]) == [layer.name for layer in w.layers]
        assert table["gradient_bytes"].sum() == GRADIENT_BYTES_PER_PARAM * w.params
        assert table["forward_flops"].sum() == pytest.approx(batch * w.forward_flops_per_sample)
        times = compute.layer_times(w, gpu, batch, precision, calibration=None)
        assert len(times) == len(w.layers)
        assert (times["forward_s"] > 0).all()
        # Lookups have no input gradient; their backward scatters into the weight.
        lookup = times["kind"] == "embedding"
        assert (times.loc[~lookup, "backward_input_s"] > 0).all()
        assert (times.loc[lookup, "backward_input_s"] == 0).all()
        assert (times.loc[lookup, "backward_weight_s"] > 0).all()
        has_params = table["params"] > 0
        assert (times.loc[has_params, "update_s"] > 0).all()
        assert (times.loc[~has_params, "update_s"] == 0).all()
        # Attention products carry no weights but do cost backward time.
        matmul = times["kind"] == "matmul"
        assert matmul.sum() == 2 * _config(workload_id).layers
        assert (times.loc[matmul, "backward_weight_s"] > 0).all()


def test_iteration_time_grows_with_batch_and_model():
    gpu = catalog.gpu("a100-sxm4-80gb")
    small = [compute.iteration_compute_time_s(workload("gpt2"), gpu, b, "fp16",
                                              calibration=None) for b in (1, 4, 16)]
    assert small[0] < small[1] < small[2]
    large = compute.iteration_compute_time_s(workload("gpt2-xl"), gpu, 4, "fp16",
                                             calibration=None)
    assert large > small[1]


def test_sequence_length_beyond_the_position_table_is_refused():
    with pytest.raises(ConfigError, match="seq_len"):
        gpt2("gpt2", 2048)
    with pytest.raises(ConfigError, match="seq_len"):
        bert("bert-base", 513)
    with pytest.raises(ConfigError, match="masked_positions"):
        bert("bert-base", 128, masked_positions=129)


def test_masked_positions_follow_the_pretraining_recipe():
    assert bert_masked_positions(128) == 20 and bert_masked_positions(512) == 80
    assert bert_masked_positions(256) == 39  # ceil(0.15 * 256)
    everywhere = bert("bert-base", 128, masked_positions=128)
    gathered = bert("bert-base", 128)
    assert everywhere.params == gathered.params
    decoder_flops = 2 * 768 * 30522 + 30522
    assert (everywhere.forward_flops_per_sample - gathered.forward_flops_per_sample
            > (128 - 20) * decoder_flops)
