"""Late ensemble: a UCB bandit picks which trained policy answers each request, from observed edit cost.

Each suggestion is one episode. Policy k has been observed N_k times with total cost C_k (lower is
better), and the bandit answers with

    argmin_k  C_k / N_k − exploration · sqrt(log t / N_k)

where t is the number of observations of all policies: the optimistic (lowest plausible) cost of each
policy, as in the research this follows (the paper's Late ensemble). A policy never observed goes
first, in the fixed order the policies were given; ties also break by that order, so the choice is a
pure function of the observations.

Warm start. A new model version starts each policy with `prior_weight` pseudo-observations (n0 = 3 by
default: as much say as three real episodes) at one shared cost, the base model's validation cost, and
tries the policies in the order of their validation log-loss of the users' edited texts
(`warm_start`). Not at each policy's own validation cost: every validation edit is the user's edit of
the answer they were shown, which keeps that answer's wording, so the policy that wrote it looks
cheapest there whatever a user would pay for the others' answers (the benchmark measured it:
docs/bench, "Does validation predict the online cost?"). The log-loss ranks policies as the users'
costs do far more often. Without a warm start every version would spend its first requests on each
policy in turn, the worst included; with it the first go to the likeliest, and real costs take over
after a few episodes.

Per language. Users edit prose and code differently, so each language keeps its own statistics (each
starting from the same validation prior). A language with fewer than `min_language_observations`
real observations uses the statistics pooled over all languages.

No state file. The bandit is rebuilt from what the store already records for each suggestion
(its model version, policy, language and settled cost): `Bandit.from_observations` replays them, so the
statistics survive restarts and a forgotten edit is forgotten here too. Observations of another model
version are skipped: a new version starts from its own validation costs.

Pure Python on purpose: the server imports it before any model is loaded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ALL_LANGUAGES = "*"


@dataclass(frozen=True)
class BanditConfig:
    exploration: float = 0.3  # α: cost units per sqrt(log t / N); costs mostly lie in [0, 1]
    prior_weight: float = 3.0  # pseudo-observations per policy at its validation cost (0: no warm start)
    min_language_observations: int = 20  # fewer real episodes in a language: use all languages' figures
    cost_cap: float = 1.0  # costs above this count as this: one rewrite must not outweigh many good episodes


@dataclass
class ArmStats:
    n: float = 0.0  # observations, pseudo ones included
    total: float = 0.0  # their summed cost
    real: int = 0  # real episodes only

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n > 0 else None


def prior_cost(figures: Mapping) -> float | None:
    """A policy's validation cost (its figures in a version's validation.json) as the bandit counts
    costs, each capped at 1; versions that recorded only the uncapped mean give that (capped later)."""
    value = figures.get("capped_cost")
    return value if value is not None else figures.get("cost")


def warm_start(validation: Mapping[str, Mapping], policies: Sequence[str], base: str = "base"
               ) -> tuple[list[str], dict[str, float | None]]:  # fmt: skip
    """(the policies in the order to try them, each one's prior cost) from a version's validation
    figures (`{policy: {capped_cost, cost, nll, ...}}`): the policies by log-loss of y′, lowest first
    (those without one after, in the given order), each at the base model's validation cost. Without
    that cost or any log-loss, each policy starts at its own validation cost, in the given order."""
    order = list(policies)
    anchor = prior_cost(validation.get(base) or {})
    nll = {p: finite((validation.get(p) or {}).get("nll")) for p in order}
    if anchor is None or all(v is None for v in nll.values()):
        return order, {p: prior_cost(validation.get(p) or {}) for p in order}
    ranked = sorted(order, key=lambda p: (nll[p] is None, nll[p] or 0.0))  # stable: ties keep the given order
    return ranked, {p: anchor for p in ranked}


class Bandit:
    """UCB on edit cost over a fixed set of policies, with per-language statistics."""

    def __init__(
        self,
        policies: Sequence[str],
        version_id: str = "",
        validation_costs: Mapping[str, float | None] | None = None,
        config: BanditConfig | None = None,
    ) -> None:
        if not policies:
            raise ValueError("a bandit needs at least one policy")
        if len(set(policies)) != len(policies):
            raise ValueError(f"policy names repeat: {list(policies)}")
        self.policies = list(policies)
        self.version_id = version_id
        self.config = config or BanditConfig()
        self.prior = {p: finite((validation_costs or {}).get(p)) for p in self.policies}
        self._stats: dict[str, dict[str, ArmStats]] = {}
        self._lock = threading.Lock()
        self._table(ALL_LANGUAGES)

    @classmethod
    def from_observations(
        cls,
        version_id: str,
        validation_costs: Mapping[str, float | None],
        observations: Iterable[Sequence | Mapping],
        config: BanditConfig | None = None,
        policies: Sequence[str] | None = None,
    ) -> Bandit:
        """A bandit for model version `version_id`, with arms `policies` (default: the keys of
        `validation_costs`, in order), replaying `observations` in order. An observation is
        (policy, language, cost), (policy, language, cost, model_version), or a mapping with those
        keys (a store row); one of another version, an unknown policy or without a cost is skipped."""
        bandit = cls(list(policies or validation_costs), version_id, validation_costs, config)
        for obs in observations:
            if isinstance(obs, Mapping):
                policy, language, cost = obs.get("policy"), obs.get("language"), obs.get("cost")
                version = obs.get("model_version", version_id)
            else:
                policy, language, cost = obs[0], obs[1], obs[2]
                version = obs[3] if len(obs) > 3 else version_id
            if version != version_id:
                continue
            bandit.update(policy, language, cost)
        return bandit

    # --- statistics -------------------------------------------------------------------------------

    def _table(self, language: str) -> dict[str, ArmStats]:
        table = self._stats.get(language)
        if table is None:
            w = self.config.prior_weight
            table = {}
            for p in self.policies:
                v = self.prior[p]
                v = None if v is None else min(max(v, 0.0), self.config.cost_cap)  # counted as costs are
                table[p] = ArmStats(n=w, total=w * v) if v is not None and w > 0 else ArmStats()
            self._stats[language] = table
        return table

    def _table_for(self, language: str) -> tuple[str, dict[str, ArmStats]]:
        """The statistics a request in `language` is decided on, and their key."""
        own = self._stats.get(language or "")
        if own is not None and sum(a.real for a in own.values()) >= self.config.min_language_observations:
            return language, own
        return ALL_LANGUAGES, self._stats[ALL_LANGUAGES]

    def _indices(self, table: dict[str, ArmStats]) -> dict[str, float | None]:
        """Each arm's optimistic cost (None for an arm never observed)."""
        t = sum(a.n for a in table.values())
        log_t = math.log(t) if t > 1 else 0.0
        return {
            p: (a.total / a.n - self.config.exploration * math.sqrt(log_t / a.n)) if a.n > 0 else None
            for p, a in table.items()
        }

    # --- the interface ----------------------------------------------------------------------------

    def choose(self, language: str = "") -> str:
        """The policy to answer a request in `language`."""
        with self._lock:
            _, table = self._table_for(language)
            indices = self._indices(table)
            for p in self.policies:  # never observed: try it first, in the given order
                if indices[p] is None:
                    return p
            # min() keeps the first of equal values: ties go to the earlier policy.
            return min(self.policies, key=lambda p: indices[p])  # type: ignore[arg-type, return-value]

    def update(self, policy: str | None, language: str | None, cost: float | None) -> bool:
        """Record one episode. Returns False (and records nothing) for an unknown policy or no cost."""
        value = finite(cost)
        if policy not in self.prior or value is None:
            return False
        value = min(max(value, 0.0), self.config.cost_cap)
        with self._lock:
            for key in {ALL_LANGUAGES, language or ""}:
                arm = self._table(key)[policy]
                arm.n += 1
                arm.total += value
                arm.real += 1
        return True

    def snapshot(self) -> dict:
        """Per policy, overall and per language: episodes, mean cost, optimistic index (lower is
        chosen first), for `redline stats` and the editor's status."""
        with self._lock:
            languages = {}
            for key in sorted(self._stats):
                table = self._stats[key]
                indices = self._indices(table)
                languages[key] = {
                    "episodes": sum(a.real for a in table.values()),
                    "decides": self._table_for(key)[0] == key if key != ALL_LANGUAGES else True,
                    "arms": {
                        p: {
                            "n": table[p].real,
                            "pseudo_n": table[p].n - table[p].real,
                            "mean_cost": table[p].mean,
                            "index": indices[p],
                        }
                        for p in self.policies
                    },
                }
            overall = languages.pop(ALL_LANGUAGES)
            return {
                "version": self.version_id,
                "policies": list(self.policies),
                "validation_costs": dict(self.prior),
                "exploration": self.config.exploration,
                "prior_weight": self.config.prior_weight,
                "episodes": overall["episodes"],
                "arms": overall["arms"],
                "languages": languages,
            }


def finite(value) -> float | None:
    """`value` as a float, or None when it is missing, not a number or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
