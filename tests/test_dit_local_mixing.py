"""The DiT's local mixing (``conv_kernel``): the convolution it claims, no look-ahead when causal, no
effect of padding, and old checkpoints (without it) still load."""

import pytest
import torch

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.ar import AR
from mdlm_dna.models.dit import DiT, DiTConfig, LocalMixer

tok = NucleotideTokenizer()
SPECIAL = sorted({tok.mask_id, *tok.special_ids_not_in_data})


def random_dit(conv_kernel: int, causal: bool = False, seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    cfg = DiTConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=2, n_heads=2, cond_dim=16, causal=causal,
                    conv_kernel=conv_kernel)
    m = DiT(cfg)
    for name, p in m.named_parameters():  # undo the zero init so that the logits depend on the context
        if "adaLN" in name or "lm_head" in name:
            torch.nn.init.normal_(p, std=0.5)
    return m.double().eval()


@pytest.mark.parametrize("causal", [False, True])
def test_local_mixer_is_the_stated_depthwise_convolution(causal):
    torch.manual_seed(0)
    d, k, L = 3, 5, 9
    mixer = LocalMixer(d, k, causal=causal).double()
    h = torch.randn(2, L, d, dtype=torch.float64)
    w = mixer.conv.weight[:, 0, :]  # [d, k]
    expected = torch.zeros_like(h)
    offset = k - 1 if causal else k // 2  # tap j reads position i + j - offset; outside the sequence: zero
    for i in range(L):
        for j in range(k):
            src = i + j - offset
            if 0 <= src < L:
                expected[:, i] += w[:, j] * h[:, src]
    torch.testing.assert_close(mixer(h), expected, rtol=1e-12, atol=1e-12)


def test_causal_model_with_local_mixing_is_an_exact_autoregressive_model():
    # the loss equals the chain rule computed one prefix at a time: a convolution that looked ahead
    # (same padding in a causal model) would make the two differ
    obj = AR(random_dit(5, causal=True, seed=1), bos_id=tok.bos_id, pad_id=tok.pad_id, never_predict=SPECIAL)
    x = torch.randint(0, 4, (2, 10), generator=torch.Generator().manual_seed(0))
    expected = []
    with torch.no_grad():
        for row in x.tolist():
            total = 0.0
            for pos in range(len(row)):
                logits = obj.backbone(torch.tensor([[tok.bos_id, *row[:pos]]]), None)[0, -1].clone()
                logits[SPECIAL] = float("-inf")
                total -= torch.log_softmax(logits, -1)[row[pos]].item()
            expected.append(total)
        got = obj.nelbo(x).per_sequence
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_padding_does_not_reach_real_positions():
    m = random_dit(5, seed=2)
    x = torch.randint(0, 4, (1, 12), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([x, torch.full((1, 4), tok.pad_id)], dim=1)
    mask = torch.cat([torch.ones(1, 12, dtype=torch.bool), torch.zeros(1, 4, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        alone = m.hidden_states(x)
        in_batch = m.hidden_states(padded, attention_mask=mask)[:, :12]
    torch.testing.assert_close(in_batch, alone, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the same check fails when the padding is read: the mask is what keeps it out
        leaky = m.hidden_states(padded)[:, :12]
    assert not torch.allclose(leaky, alone)


def test_off_by_default_and_even_widths_refused():
    m = DiT(DiTConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, cond_dim=16))
    assert not any("local" in name for name, _ in m.named_parameters())  # old checkpoints keep their names
    with pytest.raises(ValueError, match="odd"):
        DiTConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, conv_kernel=4)
