"""ESIM: shapes, masking, token injection, the text pipeline, save/load."""

from __future__ import annotations

import torch

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim
from vaa.checkpoint import load_pair_model, save_model
from vaa.data.batching import collate
from vaa.data.pairs import Pair
from vaa.data.text import Vocab, tokenize


def test_tokenizer_matches_glove_conventions():
    assert tokenize("Don't you think the U.S. economy's 5,000 well-known o'clock?") == [
        "do",
        "n't",
        "you",
        "think",
        "the",
        "u.s.",
        "economy",
        "'s",
        "5,000",
        "well-known",
        "o'clock",
        "?",
    ]
    assert tokenize("A B", lowercase=False) == ["A", "B"]


def test_vocab_is_frequency_ordered_and_round_trips(tmp_path):
    vocab = Vocab.build([["b", "a"], ["a", "c"], ["a"]], min_count=1)
    assert vocab.words == ["<pad>", "<unk>", "a", "b", "c"]
    assert vocab.encode(["a", "zzz"]) == [2, 1]
    assert Vocab.build([["b", "a"], ["a"]], min_count=2).words == ["<pad>", "<unk>", "a"]
    vocab.save(tmp_path / "v.txt")
    assert Vocab.load(tmp_path / "v.txt") == vocab


def test_shapes_and_interface():
    model = tiny_esim(num_labels=3).eval()
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    emb = model.embed(batch)
    assert [tuple(v.shape[::2]) for v in emb.values] == [(5, 6), (5, 6)]
    hidden = model.encode(emb)
    assert hidden.shape == (5, model.hidden_size)
    assert model.classify(hidden).shape == (5, 3)


def test_padding_does_not_change_outputs():
    model = tiny_esim().eval()
    with torch.no_grad():
        together = model(collate(model.featurize_all(TOY_PAIRS, TOY_LABELS)))
        for i, pair in enumerate(TOY_PAIRS):
            alone = model(collate(model.featurize_all([pair], TOY_LABELS)))
            torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-6)


def test_garbage_in_padding_positions_is_ignored():
    """Padding is masked, not merely zero: nonzero values there change nothing."""
    model = tiny_esim().eval()
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    emb = model.embed(batch)
    noisy = [e + torch.randn_like(e) * (~m).unsqueeze(-1) for e, m in zip(emb.values, emb.masks)]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(emb.with_values(noisy)), model.encode(emb))


def test_prepended_vector_changes_output_and_extends_masks():
    model = tiny_esim().eval()
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    emb = model.embed(batch)
    v = torch.randn(5, model.embedding_dim)
    with_v = model.prepend(emb, v)
    assert with_v.values[0].shape[1] == emb.values[0].shape[1] + 1
    assert with_v.masks[0][:, 0].all() and not with_v.groups[0][1][:, 0].any()
    with torch.no_grad():
        a = model.encode(with_v)
        b = model.encode(model.prepend(emb, v + 1.0))
    assert not torch.allclose(a, b)


def test_empty_sentence_becomes_unknown_token():
    model = tiny_esim()
    example = model.featurize(Pair("", "cat", None, "x"), TOY_LABELS, 0)
    assert example["a_ids"] == [model.vocab.unk_index] and example["label"] == -1


def test_checkpoint_round_trip(tmp_path):
    model = tiny_esim().eval()
    save_model(model, TOY_LABELS, tmp_path / "m")
    loaded, label_map, payload = load_pair_model(tmp_path / "m")
    assert label_map == TOY_LABELS and payload["model"]["family"] == "esim"
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch))
