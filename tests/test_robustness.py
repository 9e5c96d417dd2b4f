"""``vaa robustness``: accuracy under attack against the gold label, eps 0 is
clean accuracy exactly, and a stage-two model is attacked end to end (the
same perturbation reaches A and B)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, write_tiny_bert
from vaa.analysis.plots import robustness_figure
from vaa.cli import main
from vaa.config import AttackConfig, VAAConfig
from vaa.inference import load_model
from vaa.models.vaa import VAAModel
from vaa.robustness import (
    AttackSetting,
    attack_grid,
    compare_under_attack,
    comparison_markdown,
    decode_outcomes,
    encode_outcomes,
    robust_accuracy,
    robustness,
    summarize_over_seeds,
    summary_markdown,
)

DATA = dict(format="generic", columns="a=a,b=b,label=y")


def _grid():
    return attack_grid(l2_eps=(0.0, 0.5, 8.0), linf_eps=(0.0, 0.05, 1.0), steps=3)


@pytest.mark.parametrize("which", ["a", "b"])
def test_eps_zero_is_clean_accuracy_exactly(tiny_runs, which):
    tmp, a_run, b_run = tiny_runs
    run = a_run if which == "a" else b_run
    report = robustness([run], tmp / "valid.tsv", _grid(), batch_size=16, device="cpu", progress=False, **DATA)
    model = report["models"][0]
    evaluated = load_model(run, raw=True).evaluate(tmp / "valid.tsv", batch_size=16, **DATA)["accuracy"]
    assert model["clean_accuracy"] == evaluated
    zero = [r for r in model["results"] if r["eps"] == 0.0]
    assert len(zero) == 4  # FGSM and PGD, L2 and L-inf
    assert all(r["accuracy"] == model["clean_accuracy"] for r in zero)
    assert model["kind"] == ("model" if which == "a" else "vaa")
    # per-pair outcomes: eps 0 is the clean pass pair by pair, each row's outcomes add up to its count
    clean = decode_outcomes(model["clean_outcomes"])
    assert clean.size == model["pairs"] and int(clean.sum()) == model["clean_correct"]
    assert all((decode_outcomes(r["outcomes"]) == clean).all() for r in zero)
    assert all(int(decode_outcomes(r["outcomes"]).sum()) == r["correct"] for r in model["results"])


def test_eps_zero_reuses_the_clean_pass_instead_of_attacking(tiny_runs, monkeypatch):
    """A second pass with input gradients may pick other kernels (e.g. BERT's
    attention) and flip a pair on the boundary (seen with MiniLM: 79.00 against
    78.67 clean); so eps 0 is scored by the clean pass and never attacked."""
    import vaa.robustness as module

    attacked = []
    real = module.perturbation

    def recording(base, cfg):
        attacked.append(cfg.eps)
        return real(base, cfg)

    monkeypatch.setattr(module, "perturbation", recording)
    tmp, a_run, _ = tiny_runs
    robustness([a_run], tmp / "valid.tsv", _grid(), batch_size=16, device="cpu", progress=False, **DATA)
    assert attacked and 0.0 not in attacked


def test_a_strong_attack_lowers_accuracy_and_pgd_is_at_least_as_strong(tiny_runs):
    tmp, a_run, _ = tiny_runs
    report = robustness([a_run], tmp / "valid.tsv", _grid(), batch_size=16, device="cpu", progress=False, **DATA)
    rows = {(r["method"], r["norm"], r["eps"]): r["accuracy"] for r in report["models"][0]["results"]}
    clean = report["models"][0]["clean_accuracy"]
    assert rows[("fgsm", "l2", 8.0)] < clean and rows[("pgd", "l2", 8.0)] < clean
    assert rows[("pgd", "linf", 1.0)] <= rows[("fgsm", "linf", 1.0)] + 1e-9 or rows[("pgd", "linf", 1.0)] < clean


def test_stage_two_attack_gives_a_and_b_the_same_perturbation(toy_model):
    """Hook A's and B's encoders: in the attacked evaluation, A reads
    E_A + delta and B reads E_B + delta with the same delta (non-zero, in the
    ball), although A's and B's word vectors differ."""
    vaa = VAAModel(toy_model, VAAConfig(injection="classifier", cache=False), AttackConfig(eps=0.1))
    with torch.no_grad():
        vaa.b.embedding.weight.add_(0.3 * torch.randn_like(vaa.b.embedding.weight))  # B has trained its own vectors
    calls: list[tuple[str, list[torch.Tensor]]] = []
    for name, model in (("a", vaa.a), ("b", vaa.b)):
        original = model.encode

        def recorder(emb, _name=name, _original=original):
            calls.append((_name, [v.detach().clone() for v in emb.values]))
            return _original(emb)

        model.encode = recorder
    examples = toy_model.featurize_all(TOY_PAIRS, TOY_LABELS)
    eps = 0.5
    robust_accuracy(vaa, examples, [AttackSetting("fgsm", "l2", eps)], batch_size=len(examples))
    from vaa.data.batching import BatchIterator

    batch = next(iter(BatchIterator(examples, len(examples), shuffle=False).epoch(0)))  # the attacked batch, in its order
    with torch.no_grad():
        clean_a = vaa.a.embed(batch).values
        clean_b = vaa.b.embed(batch).values
    last_b = max(i for i, (n, _) in enumerate(calls) if n == "b")
    previous_b = max(i for i, (n, _) in enumerate(calls[:last_b]) if n == "b")
    a_inputs = [v for n, v in calls[previous_b + 1 : last_b] if n == "a"]
    delta_a = [x - c for x, c in zip(a_inputs[0], clean_a)]  # V1 = A^-(E_A + delta)
    delta_b = [x - c for x, c in zip(calls[last_b][1], clean_b)]
    assert not torch.equal(clean_a[0], clean_b[0])
    for da, db, (_, mask) in zip(delta_a, delta_b, vaa.a.embed(batch).groups):
        assert torch.allclose(da, db, atol=1e-6)
        norms = (da * mask.unsqueeze(-1)).flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, eps), rtol=1e-4)
    # and V2's input is E_A + delta + stage two's own step: A saw the perturbed input twice
    assert len(a_inputs) >= 2 and not torch.equal(a_inputs[1][0], a_inputs[0][0])


def test_cli_writes_table_json_and_plot_for_several_models(tiny_runs, tmp_path, capsys):
    tmp, a_run, b_run = tiny_runs
    out = tmp_path / "rob"
    code = main(
        [
            "robustness",
            a_run,
            b_run,
            str(tmp / "valid.tsv"),
            "--format",
            "generic",
            "--columns",
            "a=a,b=b,label=y",
            "--eps",
            "0",
            "1",
            "--linf-eps",
            "0",
            "0.1",
            "--pgd-steps",
            "2",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--versus",
            f"b:{Path(a_run).name}",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| model | clean |" in printed and "PGD-2 linf" in printed
    report = json.loads((out / "robustness.json").read_text())
    assert [m["kind"] for m in report["models"]] == ["model", "vaa"]
    assert len(report["models"][0]["results"]) == 8
    # --versus: B against A pair by pair, clean then each of the 8 attacks, in the JSON and both tables
    (paired,) = report["paired_tests"]
    assert (paired["model"], paired["reference"], len(paired["rows"])) == ("b", Path(a_run).name, 9)
    b_model, a_model = report["models"][1], report["models"][0]
    assert paired["rows"][0]["delta"] == pytest.approx(b_model["clean_accuracy"] - a_model["clean_accuracy"])
    assert f"| b − {Path(a_run).name} |" in printed and f"| b − {Path(a_run).name} |" in (out / "robustness.md").read_text()
    assert (out / "robustness.png").stat().st_size > 0 and rows_of(out / "robustness.md") == [
        f"{Path(a_run).parent.name}/{Path(a_run).name} (model)",
        f"{Path(b_run).parent.name}/b (vaa)",
    ]


def rows_of(path: Path) -> list[str]:
    """The model column of a robustness table's body."""
    body = path.read_text().split("\n\n")[1]  # the first table (paired tests, if any, follow)
    return [line.split(" | ")[0].lstrip("| ") for line in body.splitlines()[2:]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["robustness", "only-one-path"], "at least one checkpoint and a labelled file"),
        (["robustness", "runs/none", "x.tsv", "--eps", "-1"], "l2 eps must be finite and >= 0"),
        (["robustness", "runs/none", "x.tsv", "--pgd-steps", "1"], "PGD needs at least 2 steps"),
        (["robustness", "runs/none", "x.tsv"], "runs/none"),
        (["robustness", "runs/a", "x.tsv", "--versus", "vaa:a"], "--versus names vaa, not among"),
        (["robustness", "runs/a", "x.tsv", "--versus", "vaa"], "--versus takes MODEL:REFERENCE"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("vaa: error:")


def test_bert_family_a_and_stage_two_eps_zero_is_clean(tmp_path):
    """The HF family: one joint sequence with [CLS]/[SEP] (never perturbed);
    eps 0 reproduces clean accuracy for A and for a stage-two model on it."""
    pytest.importorskip("transformers")
    from vaa.models.hf import HFPairModel

    write_tiny_bert(tmp_path)
    a = HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(tmp_path), max_length=16)
    examples = a.featurize_all(TOY_PAIRS, TOY_LABELS)
    grid = attack_grid(l2_eps=(0.0, 1.0), linf_eps=(0.0,), steps=2)
    for module in (a, VAAModel(a, VAAConfig(cache=False), AttackConfig(eps=0.05))):
        result = robust_accuracy(module, examples, grid, batch_size=3)
        zero = [r["correct"] for r in result["results"] if r["eps"] == 0.0]
        assert zero == [result["clean_correct"]] * 4


def fake_report(models: dict[str, list[float]], data: str = "dev.tsv", eps: tuple[float, ...] = (0.5, 1.0)) -> dict:
    """A robustness report as ``robustness`` writes it: per checkpoint path,
    clean accuracy then one accuracy per FGSM eps."""
    return {
        "data": data,
        "models": [
            {
                "checkpoint": f"out/qqp/{path}/checkpoints/best",
                "pairs": 100,
                "clean_accuracy": accs[0],
                "results": [{"attack": "FGSM l2", "eps": e, "accuracy": a} for e, a in zip(eps, accs[1:])],
            }
            for path, accs in models.items()
        ],
    }


def test_seed_summary_averages_each_model_over_the_reports_it_appears_in():
    # written one seed at a time, a-fgm only for seeds 0 and 1
    reports = [
        fake_report({"seed0/a": [0.70, 0.50, 0.30], "seed0/a-fgm": [0.68, 0.60, 0.40]}),
        fake_report({"seed1/a": [0.74, 0.54, 0.20], "seed1/a-fgm": [0.70, 0.64, 0.50]}),
        fake_report({"seed2/a": [0.72, 0.58, 0.25]}),
    ]
    summary = summarize_over_seeds(reports)
    by_name = {m["name"]: m for m in summary["models"]}
    assert by_name["a"]["seeds"] == [0, 1, 2] and by_name["a-fgm"]["seeds"] == [0, 1]
    assert by_name["a"]["clean"]["mean"] == pytest.approx(0.72)
    assert by_name["a"]["clean"]["std"] == pytest.approx(0.02)  # sample std of 0.70, 0.74, 0.72
    assert [r["mean"] for r in by_name["a-fgm"]["results"]] == pytest.approx([0.62, 0.45])
    table = summary_markdown(summary)
    assert "| a | 0, 1, 2 | 72.00 ± 2.00 | 54.00 ± 4.00 | 25.00 ± 5.00 |" in table
    assert "| a-fgm | 0, 1 | 69.00 ± 1.41 | 62.00 ± 2.83 | 45.00 ± 7.07 |" in table


def test_seed_summary_plot_draws_the_mean_with_a_std_bar_per_model():
    reports = [
        fake_report({"seed0/a": [0.70, 0.50, 0.30], "seed0/vaa": [0.72, 0.40, 0.20]}),
        fake_report({"seed1/a": [0.74, 0.54, 0.20], "seed1/vaa": [0.76, 0.44, 0.10]}),
    ]
    summary = summarize_over_seeds(reports)
    ax = robustness_figure(summary).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (2 seeds)", "vaa (2 seeds)"]
    lines = {c.get_label(): c for c in ax.containers}
    a_line, _, (a_bars,) = lines["a (2 seeds)"].lines
    assert list(a_line.get_ydata()) == pytest.approx([52.0, 25.0])  # the means over seeds, in %
    # each bar spans mean ± sample std: seed values 50/54 -> 52 ± 2.83
    bottom, top = a_bars.get_segments()[0][:, 1]
    assert (bottom, top) == pytest.approx((52.0 - 2.828, 52.0 + 2.828), abs=1e-3)


@pytest.mark.parametrize(
    "second, message",
    [
        (fake_report({"seed1/a": [0.7, 0.5, 0.3]}, eps=(0.5, 2.0)), "another grid or file"),
        (fake_report({"seed1/a": [0.7, 0.5, 0.3]}, data="test.tsv"), "another grid or file"),
        (fake_report({"seed0/a": [0.7, 0.5, 0.3]}), "a of seed 0 appears twice"),
    ],
)
def test_seed_summary_refuses_unlike_reports(second, message):
    with pytest.raises(ValueError, match=message):
        summarize_over_seeds([fake_report({"seed0/a": [0.7, 0.5, 0.3]}), second])


def test_outcomes_round_trip_and_refuse_other_characters():
    right = np.array([True, False, False, True, True])
    assert encode_outcomes(right) == "10011"
    assert (decode_outcomes("10011") == right).all()
    with pytest.raises(ValueError, match="0 and 1"):
        decode_outcomes("10x11")


def outcome_report(models: dict[str, list[str]]) -> dict:
    """A report with per-pair outcomes: per checkpoint path, clean outcomes
    then one string per FGSM eps (0.5, 1.0)."""
    return {
        "data": "dev.tsv",
        "models": [
            {
                "checkpoint": f"out/qqp/{path}",
                "pairs": len(outs[0]),
                "clean_accuracy": outs[0].count("1") / len(outs[0]),
                "clean_outcomes": outs[0],
                "results": [
                    {"attack": "FGSM l2", "eps": e, "accuracy": o.count("1") / len(o), "outcomes": o}
                    for e, o in zip((0.5, 1.0), outs[1:])
                ],
            }
            for path, outs in models.items()
        ],
    }


def test_paired_tests_under_attack_compare_the_same_pairs_seed_by_seed():
    a0 = ["1" * 14 + "0" * 6, "1" * 10 + "0" * 10, "1" * 4 + "0" * 16]
    # seed 0: +VAA keeps the clean pairs, loses 8 pairs A kept at eps 1 (and gains none): McNemar p = 2 * 0.5**8
    v0 = ["1" * 14 + "0" * 6, "1" * 10 + "0" * 10, "0" * 20]
    v0[1] = "1" * 2 + "0" * 8 + "0" * 10
    a1 = ["1" * 15 + "0" * 5, "1" * 9 + "0" * 11, "1" * 5 + "0" * 15]
    v1 = ["1" * 15 + "0" * 5, "1" * 5 + "0" * 15, "1" * 3 + "0" * 17]
    pad = "0" * 80  # 100 pairs, like fake_report's
    a0, v0, a1, v1 = ([s + pad for s in outs] for outs in (a0, v0, a1, v1))
    n = 100
    reports = [
        outcome_report({"seed0/a": a0, "seed0/vaa": v0}),
        outcome_report({"seed1/a": a1, "seed1/vaa": v1, "seed1/a-pgd": a1}),
        fake_report({"seed2/a": [0.7, 0.5, 0.3], "seed2/vaa": [0.7, 0.4, 0.2]}),  # written before outcomes were kept
    ]
    versus_a, pgd_a, versus_pgd = compare_under_attack(reports, resamples=999)
    assert (versus_a["model"], versus_a["reference"]) == ("vaa", "a")
    assert (pgd_a["model"], pgd_a["reference"], pgd_a["seeds"]) == ("a-pgd", "a", [1])
    assert versus_a["seeds"] == [0, 1] and versus_a["left_out"] == [2]
    clean, eps05, eps1 = versus_a["rows"]
    assert clean["attack"] == "clean" and clean["delta"] == 0.0 and clean["mcnemar_p_per_seed"] == [1.0, 1.0]
    assert eps05["delta_per_seed"] == pytest.approx([-8 / n, -4 / n])
    assert eps05["delta"] == pytest.approx(-6 / n)
    assert eps05["mcnemar_p_per_seed"] == pytest.approx([2 * 0.5**8, 2 * 0.5**4])
    assert eps1["delta_per_seed"] == pytest.approx([-4 / n, -2 / n])
    assert eps05["paired_bootstrap_p"] < 0.01 and eps05["hierarchical_bootstrap_p"] is not None
    assert eps05["seed_t_test_p"] is not None and eps05["sign_test_p"] == pytest.approx(0.5)
    # +VAA against the adversarially trained A: only seed 1 has both
    assert (versus_pgd["model"], versus_pgd["reference"], versus_pgd["seeds"]) == ("vaa", "a-pgd", [1])
    assert versus_pgd["left_out"] == [0, 2] and versus_pgd["rows"][1]["hierarchical_bootstrap_p"] is None
    table = comparison_markdown([versus_a], resamples=999)
    assert "| vaa − a | 0, 1 | FGSM l2 ε=0.5 | -6.00 | -8.00, -4.00 |" in table
    assert "left out: 2" in table
    with pytest.raises(ValueError, match="no robustness report for 'a-fgm'"):
        compare_under_attack(reports, [("vaa", "a-fgm")])
    # seed 2 has accuracies only: the seed-level test still counts it (0.7-0.7, 0.4-0.5, 0.2-0.3)
    every05 = eps05["all_seeds"]
    assert every05["seeds"] == [0, 1, 2]
    assert every05["delta_per_seed"] == pytest.approx([-8 / n, -4 / n, -0.1])
    assert every05["delta"] == pytest.approx((-0.08 - 0.04 - 0.1) / 3)
    assert every05["seed_t_test_p"] is not None and every05["sign_test_p"] == pytest.approx(0.25)
    assert "all_seeds" not in pgd_a["rows"][0]  # a-pgd has no seed without outcomes
    assert "| vaa − a | 0, 1, 2 (accuracies only) | FGSM l2 ε=0.5 | -7.33 | -8.00, -4.00, -10.00 |" in table


def test_seed_level_test_without_any_per_pair_outcomes():
    reports = [
        fake_report({"seed0/a": [0.70, 0.50, 0.30], "seed0/vaa": [0.72, 0.45, 0.30]}),
        fake_report({"seed1/a": [0.74, 0.54, 0.20], "seed1/vaa": [0.75, 0.50, 0.20]}),
    ]
    (versus_a,) = compare_under_attack(reports, [("vaa", "a")], resamples=99)
    assert versus_a["seeds"] == [] and versus_a["left_out"] == [0, 1]
    clean, eps05, _ = versus_a["rows"]
    assert "delta" not in clean and clean["all_seeds"]["delta_per_seed"] == pytest.approx([0.02, 0.01])
    assert eps05["all_seeds"]["delta"] == pytest.approx(-0.045)
    table = comparison_markdown([versus_a], resamples=99)
    assert "| vaa − a | 0, 1 (accuracies only) | clean | +1.50 | +2.00, +1.00 |" in table
