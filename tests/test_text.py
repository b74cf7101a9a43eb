"""Text through the same code path: tokenizers, block layouts, caching, hub errors, training and sampling."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.data import build_datamodule
from mdlm_dna.data import text as text_data
from mdlm_dna.data.text import TextBlocks, TextDataError, _rows_from_documents, build_blocks, file_documents
from mdlm_dna.data.tokenizers import build_tokenizer
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.resources import data_file

from .conftest import TINY, compose_pretrain

pytest.importorskip("transformers")

SHAKESPEARE = Path(data_file("text/tinyshakespeare.txt"))
BERT = {"name": "bert-base-uncased", "path": data_file("tokenizers/bert-base-uncased")}
GPT2 = {"name": "gpt2", "path": data_file("tokenizers/gpt2")}


@pytest.fixture(scope="module")
def bert():
    return build_tokenizer(BERT)


@pytest.fixture(scope="module")
def gpt2():
    return build_tokenizer(GPT2)


# ----- tokenizers ------------------------------------------------------------------------------


def test_bert_reproduces_known_ids(bert):
    assert bert.encode("Hello world") == [7592, 2088]  # lower-cased WordPiece
    assert bert.encode("Hello world", add_special_tokens=True) == [101, 7592, 2088, 102]  # [CLS] ... [SEP]
    vocab = Path(BERT["path"], "vocab.txt").read_text().splitlines()  # id = line number in the vocab file
    assert [vocab[i] for i in bert.encode("Unaffable, isn't it?")] == ["una", "##ffa", "##ble", ",", "isn", "'", "t",
                                                                        "it", "?"]
    assert (bert.mask_id, bert.pad_id, bert.bos_id, bert.eos_id, bert.vocab_size) == (103, 0, 101, 102, 30522)


def test_gpt2_reproduces_known_ids_and_appends_mask_and_pad(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" the") == [262]
    assert gpt2.bos_id == gpt2.eos_id == 50256  # <|endoftext|>
    # MDLM needs [MASK] and [PAD]; they go after the 50,257 GPT-2 ids so no GPT-2 id moves
    assert (gpt2.mask_id, gpt2.pad_id, gpt2.vocab_size) == (50257, 50258, 50259)
    assert gpt2.decode(gpt2.encode("Hello world")) == "Hello world"


def test_special_token_text_in_a_corpus_stays_text(bert, gpt2):
    assert bert.mask_id not in bert.encode("a [MASK] b")
    assert gpt2.eos_id not in gpt2.encode("a <|endoftext|> b")
    assert gpt2.mask_id not in gpt2.encode("a [MASK] b")


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.path"):
        build_tokenizer({"name": "no-such-tokenizer", "path": str(tmp_path / "absent")})


def test_moved_checkpoint_falls_back_to_the_shipped_copy(tmp_path):
    with pytest.warns(UserWarning, match="shipped copy"):
        tok = build_tokenizer({"name": "gpt2", "path": str(tmp_path / "gone")})
    assert tok.encode("Hello world") == [15496, 995]


# ----- block layouts ---------------------------------------------------------------------------


def _docs(tok, n=40, seed=0):
    lines = [x for x in SHAKESPEARE.read_text().splitlines() if x.strip()]
    rng = np.random.default_rng(seed)
    # documents of 1 to 30 lines: many shorter than a row, some much longer
    starts = rng.integers(0, len(lines) - 30, n)
    return [tok.encode(" ".join(lines[s : s + rng.integers(1, 30)])) for s in starts]


@pytest.mark.parametrize("seq_len", [7, 16, 64])
@pytest.mark.parametrize("block_tokens", [1, 100, 1 << 20])  # rows are built in blocks: boundaries must not matter
def test_wrap_loses_and_duplicates_nothing(gpt2, seq_len, block_tokens):
    docs = _docs(gpt2)
    rows = list(np.concatenate(list(_rows_from_documents(docs, gpt2, seq_len, wrap=True, block_tokens=block_tokens))))
    assert all(len(r) == seq_len for r in rows)
    flat = np.concatenate(rows)
    # only the last row may be padded, and only at its end
    assert not (np.concatenate(rows[:-1]) == gpt2.pad_id).any()
    n_pad = int((flat == gpt2.pad_id).sum())
    assert n_pad < seq_len and (flat[len(flat) - n_pad :] == gpt2.pad_id).all()
    expected = np.concatenate([[gpt2.bos_id, *d, gpt2.eos_id] for d in docs])
    np.testing.assert_array_equal(flat[: len(flat) - n_pad], expected)


@pytest.mark.parametrize("seq_len", [8, 32, 128])
@pytest.mark.parametrize("block_tokens", [1, 100])
def test_padded_rows_frame_each_document_and_continue_long_ones(bert, seq_len, block_tokens):
    docs = _docs(bert)
    blocks = _rows_from_documents(docs, bert, seq_len, wrap=False, block_tokens=block_tokens)
    rows = list(np.concatenate(list(blocks)))
    # reassemble: a row that ends in padding closes its document
    rebuilt, current = [], []
    for r in rows:
        real = r[r != bert.pad_id]
        assert (r[len(real) :] == bert.pad_id).all(), "padding only at the end of a row"
        current.extend(real.tolist())
        if len(real) < seq_len or real[-1] == bert.eos_id:
            rebuilt.append(current)
            current = []
    assert rebuilt == [[bert.bos_id, *d, bert.eos_id] for d in docs]
    # a document never shares a row with another one
    assert sum(int((r == bert.bos_id).sum()) for r in rows) == len(docs)
    assert all(r[0] == bert.bos_id for r in rows if (r == bert.bos_id).any())


def test_padding_is_excluded_from_the_loss(bert):
    """At t = 1 every real token is masked: the NELBO is the weighted NLL summed over real tokens only."""
    from mdlm_dna.diffusion.mdlm import MDLM
    from mdlm_dna.diffusion.noise import build_schedule
    from mdlm_dna.models.dit import DiT, DiTConfig

    torch.manual_seed(0)
    backbone = DiT(DiTConfig(vocab_size=bert.vocab_size, d_model=32, n_layers=1, n_heads=2, cond_dim=16))
    with torch.no_grad():  # the output layer starts at zero (adaLN-Zero): make the logits differ per token
        for p in backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    obj = MDLM(backbone, build_schedule("loglinear"), mask_id=bert.mask_id, pad_id=bert.pad_id,
               never_predict=bert.special_ids_not_in_data)
    rows = np.concatenate(list(_rows_from_documents(_docs(bert, n=4), bert, 24, wrap=False)))
    x0 = torch.from_numpy(rows[:6])
    assert (x0 == bert.pad_id).any()
    t = torch.ones(len(x0))
    out = obj.nelbo(x0, t=t)
    real = x0 != bert.pad_id
    xt = torch.where(real, torch.full_like(x0, bert.mask_id), x0)  # the forward process at t = 1, by hand
    logits = backbone(xt, obj.schedule.sigma(t)).double()
    logits[..., [bert.mask_id, bert.pad_id]] = float("-inf")
    nll = -torch.log_softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1)
    expected = obj.schedule.loss_weight(t).double()[:, None] * torch.where(real, nll, torch.zeros_like(nll))
    torch.testing.assert_close(out.per_sequence.double(), expected.sum(-1), rtol=1e-5, atol=1e-5)
    assert torch.equal(out.num_tokens, real.sum(-1))


def test_blocks_round_trip_through_the_disk_cache(gpt2, tmp_path):
    texts = ["First document.", "Second, longer document " * 20, "Third."]
    out = build_blocks(texts, gpt2, 16, True, tmp_path / "blocks")
    blocks = TextBlocks(out)
    ids = np.stack([blocks[i]["input_ids"].numpy() for i in range(len(blocks))])
    assert blocks.meta["dtype"] == "uint16" and blocks.meta["documents"] == 3
    framed = np.concatenate([[gpt2.bos_id, *gpt2.encode(t), gpt2.eos_id] for t in texts])
    assert ids.size - (ids == gpt2.pad_id).sum() == framed.size
    np.testing.assert_array_equal(ids.reshape(-1)[: framed.size], framed)
    assert not list(tmp_path.glob("blocks.*")), "no temporary folder left behind"
    # a second writer of the same cache (another node's rank 0) keeps the first, complete copy
    build_blocks(texts, gpt2, 16, True, tmp_path / "blocks")
    assert TextBlocks(out).meta == blocks.meta and not list(tmp_path.glob("blocks.*"))


def test_file_splits_are_disjoint_and_cover_every_document(tmp_path):
    cfg = {"source": "files", "paths": [str(SHAKESPEARE)], "document": "paragraph", "val_fraction": 0.1,
           "test_fraction": 0.05}
    parts = {s: file_documents(cfg, s) for s in ("train", "validation", "test")}
    every = text_data.split_documents(SHAKESPEARE.read_text(), "paragraph")
    assert parts["train"] + parts["validation"] + parts["test"] == every
    assert len(parts["test"]) == round(0.05 * len(every)) and len(parts["validation"]) == round(0.1 * len(every))


def test_bad_text_files_are_clear_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TextDataError, match="latin1.txt: not UTF-8"):
        file_documents({"source": "files", "paths": [str(bad)]}, "train")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        file_documents({"source": "files", "paths": [str(tmp_path / "missing.txt")]}, "train")
    tiny = tmp_path / "one.txt"
    tiny.write_text("only one paragraph")
    with pytest.raises(TextDataError, match="none for the test split"):
        file_documents({"source": "files", "paths": [str(tiny)]}, "test")


def test_offline_hub_dataset_fails_at_once_with_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = OmegaConf.to_container(compose_pretrain("data=lm1b").data)
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        list(text_data.hub_documents(cfg, "train"))
    assert time.perf_counter() - start < 30
    assert "lm1b" in str(err.value) and "data=text_files" in str(err.value) and "HF_DATASETS_OFFLINE" in str(err.value)


def test_text_configs_compose_with_their_tokenizers_and_layouts():
    lm1b = compose_pretrain("data=lm1b").data
    owt = compose_pretrain("data=openwebtext").data
    wiki = compose_pretrain("data=wikitext103").data
    assert (lm1b.tokenizer.name, lm1b.seq_len, lm1b.wrap) == ("bert-base-uncased", 128, False)
    assert (owt.tokenizer.name, owt.seq_len, owt.wrap) == ("gpt2", 1024, True)
    assert (wiki.hub.name, wiki.wrap) == ("wikitext-103-raw-v1", True)
    assert compose_pretrain().data.kind == "genome"


# ----- the data module, cached once ------------------------------------------------------------


def _text_config(tmp_path, *extra):
    cfg = compose_pretrain("data=tinyshakespeare", *TINY, f"cache_dir={tmp_path / 'cache'}", *extra)
    return OmegaConf.to_container(cfg, resolve=True)


def test_corpus_is_tokenized_once_and_reused(tmp_path, monkeypatch, bert):
    config = _text_config(tmp_path)
    dm = build_datamodule(config, cache_dir=config["cache_dir"], tokenizer=bert)
    dm.prepare_data()
    n_rows = {s: len(dm.load_split(s)) for s in ("train", "validation", "test")}
    assert n_rows["train"] > 10 * n_rows["test"] > 0

    def fail(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(text_data, "build_blocks", fail)
    again = build_datamodule(config, cache_dir=config["cache_dir"], tokenizer=bert)
    again.prepare_data()
    assert {s: len(again.load_split(s)) for s in n_rows} == n_rows
    # another layout is another cache
    other = build_datamodule({**config, "data": {**config["data"], "seq_len": 32}}, config["cache_dir"], bert)
    with pytest.raises(AssertionError, match="tokenized again"):
        other.prepare_data()


def test_training_batches_are_a_pure_function_of_seed_and_index(tmp_path, bert):
    config = _text_config(tmp_path)
    dm = build_datamodule(config, cache_dir=config["cache_dir"], tokenizer=bert)
    train = dm.load_split("train")
    a = text_data.ShuffledRows(train, 3 * len(train), seed=1)
    b = text_data.ShuffledRows(train, 3 * len(train), seed=1)
    idx = [5, len(train) + 2, 2 * len(train) + 7, 3]
    for i in idx:
        assert torch.equal(a[i]["input_ids"], b[i]["input_ids"])
    # one pass visits every row once
    seen = {a._row(s) for s in range(len(train))}
    assert seen == set(range(len(train)))


# ----- a tiny model learns, evaluates and samples text ------------------------------------------


def test_tiny_dit_lowers_validation_perplexity_and_samples_text(tmp_path, one_thread):
    from mdlm_dna.evaluate import evaluate
    from mdlm_dna.pretrain import run
    from mdlm_dna.sample import generate

    overrides = ["trainer.max_steps=60", "trainer.val_check_interval=60", "optim.lr=3e-3", "model.d_model=64",
                 "data.val_max_windows=24"]
    cfg = compose_pretrain("data=tinyshakespeare", *TINY, f"cache_dir={tmp_path / 'cache'}", *overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    pl.seed_everything(0, verbose=False)
    untrained = DiffusionModule(config)
    dm = build_datamodule(config, cache_dir=config["cache_dir"], tokenizer=untrained.tokenizer)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(untrained, datamodule=dm, verbose=False)[0]["val/nelbo"]

    result = run(cfg, tmp_path / "run")
    after = result["metrics"]["val/nelbo"]
    assert after < before - 2.0, (before, after)  # nats per token: perplexity falls by a factor > 7

    ev = evaluate(OmegaConf.merge(OmegaConf.load(Path(__file__).parents[1] / "configs" / "evaluate.yaml"), {
        "ckpt": result["last_ckpt"], "t_samples": 2, "max_windows": 16, "cache_dir": str(tmp_path / "cache"),
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False}}))
    assert ev["perplexity"] == pytest.approx(float(np.exp(ev["nelbo_nats_per_token"])))

    report = generate({**OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs" / "sample.yaml")),
                       "ckpt": result["last_ckpt"], "num_samples": 2, "length": 24, "steps": 8,
                       "output": str(tmp_path / "samples.txt")}, tmp_path)
    text = Path(report["fasta"]).read_text()
    assert text.count("=== sample") == 2
    words = [w for w in text.split() if w.isalpha() and w not in ("sample",)]
    assert len(words) >= 5, text  # decoded word pieces, not ids
    assert "[PAD]" not in text and "[MASK]" not in text
    assert 0 < report["token_entropy"] <= np.log(24)

    prompted = generate({**OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "configs" /
                                                                   "sample.yaml")),
                         "ckpt": result["last_ckpt"], "num_samples": 1, "length": 16, "steps": 4,
                         "prefix": "to be or not", "output": str(tmp_path / "prompted.txt")}, tmp_path)
    assert "to be or not" in Path(prompted["fasta"]).read_text()

    # zero-shot: each file evaluated whole with the run's tokenizer -> one row per corpus
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    paragraphs = text_data.split_documents(SHAKESPEARE.read_text(), "paragraph")
    a.write_text("\n\n".join(paragraphs[:40]))
    b.write_text("\n\n".join(paragraphs[-40:]))
    zs = evaluate(OmegaConf.merge(OmegaConf.load(Path(__file__).parents[1] / "configs" / "evaluate.yaml"), {
        "ckpt": result["last_ckpt"], "t_samples": 1, "zero_shot": [str(a), str(b)],
        "cache_dir": str(tmp_path / "cache"), "output": str(tmp_path / "zs.json"),
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False}}))
    rows = json.loads((tmp_path / "zs.json").read_text())["zero_shot"]
    assert [r["corpus"] for r in rows] == ["a.txt", "b.txt"] and rows == zs["zero_shot"]
    assert all(r["documents"] == 40 and r["perplexity_bound"] < np.exp(before) for r in rows)
