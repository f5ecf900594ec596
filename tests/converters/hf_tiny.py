"""Tiny random transformers models built from configs in code (hidden 32, 2 layers), seeded.

``NAME()`` builds one; ``NAME_broken()`` is the same model with one weight tensor scaled by 1.01.
Shared by tests/converters/test_hf.py (also as ``module:callable`` factories) and
benchmarks/bench_hf.py. Nothing is downloaded.
"""

import torch
import transformers as T


def _seeded(build):
    torch.manual_seed(0)
    return build().eval()


def bert():
    return _seeded(lambda: T.BertForSequenceClassification(T.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=3)))


def distilbert():
    return _seeded(lambda: T.DistilBertModel(T.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64)))


def t5():
    return _seeded(lambda: T.T5EncoderModel(T.T5Config(vocab_size=99, d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2)))


def whisper():
    return _seeded(lambda: T.WhisperModel(T.WhisperConfig(
        vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
        max_source_positions=32, max_target_positions=32, pad_token_id=1, bos_token_id=2, eos_token_id=2,
        decoder_start_token_id=2)).get_encoder())


def gpt2():
    return _seeded(lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64)))


def llama():
    return _seeded(lambda: T.LlamaForCausalLM(T.LlamaConfig(
        vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64)))


def vit():
    return _seeded(lambda: T.ViTForImageClassification(T.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_labels=5)))


def damage(model):
    """One weight tensor scaled by 1.01: the first of the largest 2-D non-embedding weights (an MLP's).

    (A query or key weight would hardly show: random init at std 0.02 leaves attention near uniform.)
    """
    weights = [p for n, p in model.named_parameters() if p.dim() == 2 and not any(e in n for e in ("emb", "wte", "wpe", "shared"))]
    with torch.no_grad():
        max(weights, key=lambda p: p.numel()).mul_(1.01)
    return model


def _broken(build):
    return lambda: damage(build())


bert_broken, distilbert_broken, t5_broken = _broken(bert), _broken(distilbert), _broken(t5)
whisper_broken, gpt2_broken, llama_broken, vit_broken = _broken(whisper), _broken(gpt2), _broken(llama), _broken(vit)


class _LengthScaled(T.PreTrainedModel):
    """Embeddings times the sequence length read as a Python float: a TorchScript trace keeps the export length."""

    config_class = T.BertConfig

    def __init__(self, config):
        super().__init__(config)
        self.emb = torch.nn.Embedding(config.vocab_size, config.hidden_size)

    def forward(self, input_ids=None, attention_mask=None, return_dict=True):
        length = float(input_ids.shape[1])
        hidden = self.emb(input_ids) * attention_mask[..., None] * length
        return T.modeling_outputs.BaseModelOutput(last_hidden_state=hidden)


def length_scaled():
    return _seeded(lambda: _LengthScaled(T.BertConfig(vocab_size=99, hidden_size=8, max_position_embeddings=64)))
