"""The Hugging Face family on a tiny randomly initialised BERT built in the
test (no download): shapes, masking, FGSM on word positions only, injection,
frozen A, save/load."""

from __future__ import annotations

import pytest
import torch
import transformers  # a hard dependency: a missing one fails the tests, never skips them

from conftest import TOY_LABELS, TOY_PAIRS, make_tokenizer, write_tiny_bert
from vaa.attack import forward_with_gradient, perturbation
from vaa.checkpoint import load_pair_model, save_model
from vaa.config import AttackConfig, RunConfig, VAAConfig, apply_overrides
from vaa.data.batching import collate
from vaa.data.pairs import Pair
from vaa.models.hf import HFPairModel
from vaa.models.vaa import VAAModel


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer, 16-wide BERT and a WordPiece tokenizer over the toy words."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), layers=2, extra_words=["##s"], hidden_dropout_prob=0.1)


@pytest.fixture
def tiny_bert(tiny_bert_dir):
    return HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(tiny_bert_dir), max_length=16).eval()


def test_shapes_and_word_positions(tiny_bert):
    examples = tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS)
    ex = examples[0]  # [CLS] the cat sat [SEP] a cat sat down [SEP]
    assert 1 not in ex["input_ids"]  # every word is in the vocabulary: no [UNK]
    assert ex["word_a"] == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert ex["word_b"] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    assert ex["b_start"] == 5
    batch = collate(examples)
    emb = tiny_bert.embed(batch)
    hidden = tiny_bert.encode(emb)
    assert hidden.shape == (5, 16) and tiny_bert.classify(hidden).shape == (5, 2)


def test_padding_does_not_change_outputs(tiny_bert):
    with torch.no_grad():
        together = tiny_bert(collate(tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS)))
        for i, pair in enumerate(TOY_PAIRS):
            alone = tiny_bert(collate(tiny_bert.featurize_all([pair], TOY_LABELS)))
            torch.testing.assert_close(together[i], alone[0], rtol=1e-4, atol=1e-5)


def test_truncation_is_counted(tiny_bert, caplog):
    long = Pair(" ".join(["cat"] * 30), "dog", "duplicate", "long")
    examples = tiny_bert.featurize_all([long, TOY_PAIRS[0]], TOY_LABELS)
    assert len(examples[0]["input_ids"]) == 16 and tiny_bert.last_truncated == (1, 2)
    assert "truncated" in caplog.text


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fgsm_touches_only_real_word_positions(tiny_bert, norm):
    batch = collate(tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS))
    base = forward_with_gradient(tiny_bert, batch)
    step = perturbation(base, AttackConfig(norm=norm, eps=0.1))[0]
    words = batch["word_a"].bool() | batch["word_b"].bool()
    assert (step[~words] == 0).all()  # [CLS], [SEP], padding untouched
    assert (step[words].abs().sum(-1) > 0).all()
    if norm == "l2":  # per-sentence norm: eps for a and for b separately
        for group in ("word_a", "word_b"):
            m = batch[group].bool().unsqueeze(-1)
            torch.testing.assert_close((step * m).flatten(1).norm(dim=1), torch.full((5,), 0.1), rtol=1e-4, atol=1e-5)


def test_token_injection_layout(tiny_bert):
    batch = collate(tiny_bert.featurize_all(TOY_PAIRS[:1], TOY_LABELS))
    emb = tiny_bert.embed(batch)
    v = torch.randn(1, 16)
    out = tiny_bert.prepend(emb, v)
    # [CLS] V the cat sat [SEP] V a cat sat down [SEP]
    torch.testing.assert_close(out.values[0][0, 1], v[0])
    torch.testing.assert_close(out.values[0][0, 6], v[0])
    torch.testing.assert_close(out.values[0][0, 2:5], emb.values[0][0, 1:4])
    torch.testing.assert_close(out.values[0][0, 7:12], emb.values[0][0, 5:10])
    assert out.extras["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert out.masks[0].all()
    assert out.groups[0][1][0].tolist() == [False, False, True, True, True] + [False] * 7
    assert not out.groups[1][1][0, 6]


@pytest.mark.parametrize("injection", ["token", "classifier", "add"])
def test_v_injection_changes_the_output(tiny_bert, injection):
    model = VAAModel(tiny_bert, VAAConfig(injection=injection), AttackConfig()).eval()
    if injection == "classifier":
        with torch.no_grad():
            model.b_head[1].weight[:, 16:].normal_()
    batch = collate(tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS))
    v = torch.randn(5, 16)
    with torch.no_grad():
        base = model(batch, vector=v)
        torch.testing.assert_close(model(batch, vector=v.clone()), base)
        assert not torch.allclose(model(batch, vector=v * 3), base)


def test_a_stays_frozen_in_stage_two(tiny_bert):
    model = VAAModel(tiny_bert, VAAConfig(), AttackConfig())
    before = {k: v.clone() for k, v in model.a.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = collate(tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS))
    model.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.a.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert any(not torch.equal(model.b.state_dict()[k], before[k]) for k in before)


def test_checkpoint_round_trip_without_the_model_folder(tiny_bert, tmp_path):
    save_model(tiny_bert, TOY_LABELS, tmp_path / "m")
    loaded, label_map, _ = load_pair_model(tmp_path / "m")
    batch = collate(tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), tiny_bert(batch))
    assert loaded.featurize_all(TOY_PAIRS, TOY_LABELS) == tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS)
    # the tokenizer travels as its own JSON/text files; nothing in the folder is a pickle
    import zipfile

    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    assert (tmp_path / "m" / "tokenizer" / "tokenizer.json") in files
    assert not any(zipfile.is_zipfile(p) or p.read_bytes()[:1] == b"\x80" for p in files)


def test_every_command_works_for_the_hf_family(tmp_path, capsys):
    """train, evaluate, predict, vulnerability, analyze, train-vaa with the
    same arguments as for ESIM (plus --family hf --model DIR)."""
    from conftest import WORDS, write_pairs
    from vaa.cli import main

    folder = tmp_path / "bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "is", "here", "where", *WORDS]
    make_tokenizer(vocab).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder)
    train_file, valid_file = write_pairs(tmp_path / "t.tsv", 32, 0), write_pairs(tmp_path / "v.tsv", 12, 1)
    data = ["--format", "generic", "--columns", "a=a,b=b,label=y"]
    run_a, run_b = str(tmp_path / "a"), str(tmp_path / "b")
    assert (
        main(
            [
                "train",
                "--family",
                "hf",
                "--model",
                str(folder),
                "--train",
                str(train_file),
                "--valid",
                str(valid_file),
                *data,
                "--epochs",
                "1",
                "--output",
                run_a,
                "--no-progress",
            ]
        )
        == 0
    )
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["evaluate", run_a, str(valid_file), *data]) == 0
    assert main(["predict", run_a, "--pair", "the cat is here", "where is the dog"]) == 0
    assert main(["vulnerability", run_a, str(valid_file), *data, "--no-progress"]) == 0
    assert (
        main(
            [
                "analyze",
                run_a,
                str(valid_file),
                *data,
                "--eps-list",
                "0.01",
                "0.1",
                "--output",
                str(tmp_path / "an"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["train-vaa", "--model-a", run_a, "--epochs", "1", "--output", run_b, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "model A:" in out
    assert main(["evaluate", run_b, str(valid_file), *data]) == 0
    assert "accuracy" in capsys.readouterr().out
    import json

    b_config = json.load(open(f"{run_b}/config.json"))
    assert b_config["optim"]["optimizer"] == "adamw" and b_config["model"]["family"] == "hf"  # the hf-vaa preset
    preset = tmp_path / "tiny-hf.yaml"
    preset.write_text(
        f"extends: hf\nmodel: {{path: {folder}}}\noptim: {{max_epochs: 1}}\n"
        f"data: {{train: {train_file}, valid: {valid_file}, format: generic, columns: 'a=a,b=b,label=y'}}\n"
    )
    assert (
        main(
            [
                "reproduce",
                "--preset",
                str(preset),
                "--seeds",
                "0",
                "--variants",
                "vaa",
                "--set-b",
                "optim.max_epochs=1",
                "--output",
                str(tmp_path / "repro"),
                "--no-progress",
            ]
        )
        == 0
    )
    table = json.load(open(tmp_path / "repro" / "table3.json"))
    assert set(table["rows"]) == {"baseline", "vaa", "baseline_recal", "vaa_recal"}
    assert json.load(open(tmp_path / "repro" / "seed0" / "vaa" / "config.json"))["optim"]["optimizer"] == "adamw"


def test_max_length_leaves_room_for_the_two_v_positions(tiny_bert_dir):
    model = HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(tiny_bert_dir), max_length=64)  # the model has 64 positions
    assert model.max_length == 62
    long = Pair(" ".join(["cat"] * 40), " ".join(["dog"] * 40), "duplicate", "long")
    vaa = VAAModel(model, VAAConfig(), AttackConfig()).eval()
    with torch.no_grad():
        assert vaa(collate(model.featurize_all([long], TOY_LABELS))).shape == (1, 2)


@pytest.mark.parametrize(
    "options",
    [{"scalars": "log_grad_norm,F2,targeted_loss_drop", "normalize": "layernorm"}, {"saliency": True, "diff_scale": "step"}],
)
def test_feature_options_cached_equal_on_the_fly_for_the_hf_family(tiny_bert, options):
    """Both sentences share one tensor here: saliency and per-sentence scalars
    must land on the right positions of the joint sequence."""
    import numpy as np

    from vaa.features import feature_needs, pair_features
    from vaa.stage_two import attach_features, stage_two_features

    config = apply_overrides(RunConfig(), {"vaa": options, "attack": {"eps": 0.5}})
    model = VAAModel(tiny_bert, config.vaa, config.attack).eval()
    if model.saliency_weight is not None:
        with torch.no_grad():
            model.saliency_weight.normal_()
    examples = tiny_bert.featurize_all(TOY_PAIRS, TOY_LABELS)
    raw = pair_features(model.a, examples, config.attack, [w for w in feature_needs(config.vaa) if w != "scalars"], batch_size=2)
    raw = {
        k: (torch.from_numpy(v) if v.dtype != object else [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in v])
        for k, v in raw.items()
    }
    cached = collate(attach_features(examples, stage_two_features(raw, config, "valid")))
    with torch.no_grad():
        torch.testing.assert_close(model(cached), model(collate(examples)), rtol=1e-4, atol=1e-5)
    if options.get("saliency"):  # words only: [CLS]/[SEP]/padding get no saliency, each sentence's largest is 1
        for row, s in enumerate(raw["saliency0"]):
            words = cached["word_a"][row, : len(s)].bool() | cached["word_b"][row, : len(s)].bool()
            assert (s[~words] == 0).all() and s[words].max() == pytest.approx(1.0)
