"""The Late ensemble's UCB bandit on scripted costs."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from server.bandit import Bandit, BanditConfig

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["base", "sup", "pref", "cost"]


def run(bandit: Bandit, true_cost: dict[str, float], episodes: int, language: str = "python", seed: int = 0):
    """Play `episodes` requests; each answer costs the arm's true cost plus noise. Returns pull counts."""
    rng = random.Random(seed)
    pulls = {p: 0 for p in bandit.policies}
    for _ in range(episodes):
        arm = bandit.choose(language)
        pulls[arm] += 1
        bandit.update(arm, language, min(max(true_cost[arm] + rng.gauss(0, 0.1), 0.0), 1.0))
    return pulls


def test_untried_arms_go_first_in_the_given_order():
    bandit = Bandit(ARMS, config=BanditConfig(prior_weight=0))
    order = []
    for _ in ARMS:
        arm = bandit.choose("python")
        order.append(arm)
        bandit.update(arm, "python", 0.5)
    assert order == ARMS


def test_best_arm_gets_most_pulls():
    true_cost = {"base": 0.45, "sup": 0.15, "pref": 0.35, "cost": 0.30}
    bandit = Bandit(ARMS, config=BanditConfig(prior_weight=0))
    pulls = run(bandit, true_cost, 400)
    assert max(pulls, key=pulls.get) == "sup"
    assert pulls["sup"] > 0.6 * 400
    assert all(pulls[p] >= 1 for p in ARMS)  # everyone was tried


def test_costs_lower_is_better_and_index_is_optimistic():
    bandit = Bandit(["a", "b"], config=BanditConfig(prior_weight=0, exploration=0.5))
    for cost in (0.8, 0.7):
        bandit.update("a", "python", cost)
    for cost in (0.2, 0.3):
        bandit.update("b", "python", cost)
    assert bandit.choose("python") == "b"
    arms = bandit.snapshot()["arms"]
    assert arms["a"]["n"] == 2 and arms["a"]["mean_cost"] == pytest.approx(0.75)
    assert arms["b"]["index"] == pytest.approx(0.25 - 0.5 * math.sqrt(math.log(4) / 2))


def test_ties_break_by_the_fixed_order_and_replay_is_deterministic():
    bandit = Bandit(["x", "y", "z"], config=BanditConfig(prior_weight=0))
    for p in ("z", "y", "x"):
        bandit.update(p, "go", 0.4)
    assert bandit.choose("go") == "x"
    history = [(p, "go", c) for p, c in [("x", 0.1), ("y", 0.9), ("z", 0.5), ("x", 0.3)] * 5]
    first = Bandit.from_observations("v1", {"x": None, "y": None, "z": None}, history)
    again = Bandit.from_observations("v1", {"x": None, "y": None, "z": None}, history)
    assert first.snapshot() == again.snapshot()
    assert [first.choose("go") for _ in range(3)] == [again.choose("go")] * 3


def test_warm_start_follows_validation_costs_until_real_costs_disagree():
    validation = {"base": 0.40, "sup": 0.10, "pref": 0.30, "cost": 0.25}
    bandit = Bandit.from_observations("v2", validation, [], config=BanditConfig(prior_weight=3))
    assert bandit.choose("python") == "sup"  # no arm is untried: the validation prior decides
    arms = bandit.snapshot()["arms"]
    assert arms["sup"]["n"] == 0 and arms["sup"]["pseudo_n"] == 3
    assert [p for p, _ in sorted(arms.items(), key=lambda kv: kv[1]["index"])] == ["sup", "cost", "pref", "base"]
    # The user's real costs say otherwise: sup is poor for them, pref is good.
    pulls = run(bandit, {"base": 0.5, "sup": 0.7, "pref": 0.1, "cost": 0.4}, 300)
    assert max(pulls, key=pulls.get) == "pref"


def test_validation_priors_count_as_capped_costs():
    """A validation mean of 3.0 (one answer the user rewrote at length) is worth what a 1.0 is: costs
    are capped at 1 when they are observed, so their priors are too; the capped mean wins when recorded."""
    from server.bandit import prior_cost

    assert prior_cost({"cost": 3.0, "capped_cost": 0.6}) == 0.6 and prior_cost({"cost": 0.4}) == 0.4
    bandit = Bandit.from_observations("v", {"base": 3.0, "sup": 0.9}, [], config=BanditConfig(prior_weight=3))
    arms = bandit.snapshot()["arms"]
    assert arms["base"]["mean_cost"] == pytest.approx(1.0) and arms["sup"]["mean_cost"] == pytest.approx(0.9)


def test_warm_start_tries_policies_by_log_loss_at_the_base_models_cost():
    """Validation costs favour the policy whose answers the users edited (the base model's, for a
    first version): the warm start takes the order from the log-loss of y′ and gives every policy the
    base model's cost, so the likeliest policy goes first and its real costs decide."""
    from server.bandit import warm_start

    validation = {"base": {"capped_cost": 0.2, "nll": 1.0}, "sup": {"capped_cost": 0.6, "nll": 0.7},
                  "pref": {"capped_cost": 0.5, "nll": 0.8}, "cost": {"capped_cost": 0.3, "nll": 1.1},
                  "mixture": {"cost": 0.4}}  # fmt: skip
    order, priors = warm_start(validation, ["base", "sup", "pref", "cost", "mixture"])
    assert order == ["sup", "pref", "base", "cost", "mixture"] and set(priors.values()) == {0.2}
    bandit = Bandit.from_observations("v", priors, [], policies=order)
    assert bandit.choose("python") == "sup"
    # SUP's answers are what this user wants: it keeps being chosen.
    pulls = run(bandit, {"base": 0.3, "sup": 0.05, "pref": 0.2, "cost": 0.4, "mixture": 0.3}, 200)
    assert max(pulls, key=pulls.get) == "sup"
    # Figures without any log-loss (a version from before it was recorded): each policy's own cost.
    old = {p: {"cost": v.get("capped_cost", v.get("cost"))} for p, v in validation.items()}
    assert warm_start(old, ["base", "sup"]) == (["base", "sup"], {"base": 0.2, "sup": 0.6})
    assert warm_start({}, ["base"]) == (["base"], {"base": None})


def test_languages_keep_their_own_statistics_with_a_pooled_fallback():
    cfg = BanditConfig(prior_weight=0, min_language_observations=20)
    bandit = Bandit(["sup", "pref"], config=cfg)
    rng = random.Random(1)
    for _ in range(200):
        for language, best in (("python", "sup"), ("markdown", "pref")):
            arm = bandit.choose(language)
            cost = 0.1 if arm == best else 0.6
            bandit.update(arm, language, cost + rng.uniform(-0.05, 0.05))
    assert bandit.choose("python") == "sup"
    assert bandit.choose("markdown") == "pref"
    snap = bandit.snapshot()
    assert snap["languages"]["python"]["arms"]["sup"]["n"] > snap["languages"]["python"]["arms"]["pref"]["n"]
    assert snap["languages"]["markdown"]["arms"]["pref"]["n"] > snap["languages"]["markdown"]["arms"]["sup"]["n"]
    assert snap["languages"]["python"]["decides"]
    # A language with a handful of episodes follows the pooled figures, not its own few.
    bandit.update("pref", "rust", 0.0)
    assert not bandit.snapshot()["languages"]["rust"]["decides"]
    pooled = bandit.snapshot()["arms"]
    assert bandit.choose("rust") == min(pooled, key=lambda p: pooled[p]["index"])


def test_state_is_derived_from_store_rows_of_this_version_only():
    rows = [
        {"policy": "sup", "language": "python", "cost": 0.9, "model_version": "v1"},  # older version
        {"policy": "sup", "language": "python", "cost": 0.2, "model_version": "v2"},
        {"policy": "pref", "language": "python", "cost": None, "model_version": "v2"},  # not settled
        {"policy": "mixture", "language": "python", "cost": 0.1, "model_version": "v2"},  # not an arm
        ("pref", "python", 0.4, "v2"),
        ("pref", "python", float("nan")),
        ("pref", "python", 7.5),  # capped at 1.0
    ]
    bandit = Bandit.from_observations("v2", {"sup": 0.3, "pref": 0.3}, rows, config=BanditConfig(prior_weight=1))
    arms = bandit.snapshot()["arms"]
    assert arms["sup"]["n"] == 1 and arms["sup"]["mean_cost"] == pytest.approx((0.3 + 0.2) / 2)
    assert arms["pref"]["n"] == 2 and arms["pref"]["mean_cost"] == pytest.approx((0.3 + 0.4 + 1.0) / 3)
    assert bandit.snapshot()["episodes"] == 3
    assert bandit.snapshot()["version"] == "v2"


def test_policies_not_validated_are_tried_first_even_with_a_warm_start():
    bandit = Bandit.from_observations("v3", {"sup": 0.1, "pref": 0.2}, [], policies=["sup", "pref", "cost"])
    assert bandit.choose("python") == "cost"


def test_importing_needs_no_torch():
    code = "import sys, server.bandit; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_rejects_bad_arm_sets():
    with pytest.raises(ValueError):
        Bandit([])
    with pytest.raises(ValueError):
        Bandit(["a", "a"])
