"""The attack's directions and norms as tables, in step with the config's choices."""

from __future__ import annotations

import numpy as np

from vaa import attack
from vaa.config import DIRECTIONS, NORMS


def test_every_configurable_direction_and_norm_has_its_entry():
    assert list(attack.DIRECTIONS_STEP) == list(DIRECTIONS)
    assert list(attack.RANDOM_DRAWS) == list(NORMS)


def test_a_direction_is_made_by_its_table_entry(monkeypatch):
    from conftest import tiny_esim, toy_batch
    from vaa.config import AttackConfig

    model = tiny_esim()
    base = attack.forward_with_gradient(model, toy_batch(model))
    marker = [object()]
    monkeypatch.setitem(attack.DIRECTIONS_STEP, "random", lambda b, cfg: marker)
    assert attack.perturbation(base, AttackConfig(direction="random")) is marker
    assert attack.perturbation(base, AttackConfig(direction="fgsm")) is not marker


def test_the_random_draws_match_their_norms():
    rng = np.random.default_rng(0)
    signs = attack.RANDOM_DRAWS["linf"](rng, (50, 4))
    assert set(np.unique(signs)) == {-1.0, 1.0}
    gauss = attack.RANDOM_DRAWS["l2"](np.random.default_rng(0), (2000, 4))
    assert abs(gauss.mean()) < 0.1 and abs(gauss.std() - 1) < 0.1
