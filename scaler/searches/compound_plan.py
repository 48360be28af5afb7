"""`scaler search --plan`: what a study would train, before it trains anything.

Each of the recipe's candidates with the network it is trained as (at equal real FLOPs, scaler.equal_cost), or why
it is skipped, and the time it is projected to take here: short trainings of the proxy baseline and of the first
candidate at the study's cost measure the seconds per image on this machine, and each candidate's time is read
off the line through the two at its FLOPs ratio. The trainings a search adds after its first pass (repeats, a
rank check, the found family at other phis) depend on what wins it, so they are counted and timed at the mean of
the first pass, not listed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scaler.baselines import resolve_spec
from scaler.budget import Budget
from scaler.data import load_data
from scaler.device import resolve_device, thread_share, use_threads
from scaler.equal_cost import CostMatch, full_size, study_currency
from scaler.estimator import estimate
from scaler.grid import Candidate
from scaler.latency_table import LatencyTable, table_error
from scaler.searches.compound import candidate_network, check_request, network_key, planned_total
from scaler.searches.compound_recipe import Recipe
from scaler.searches.compound_records import latency_summary
from scaler.training import train

EVAL_SHARE = 1 / 3  # a validation image costs about a third of a training image (a forward pass, no backward)


@dataclass(frozen=True)
class PlannedCandidate:
    candidate: Candidate
    match: CostMatch
    params: int | None  # None: skipped
    same_network_as: int | None  # the index of an earlier candidate that rounds to the same network (not trained)
    seconds: float  # 0 for a skipped candidate or one that shares a network
    flops_ratio: float | None  # the network's real FLOPs against the proxy's (when skipped: the closest one's in
    # FLOPs, unknown in another currency)

    def to_dict(self) -> dict:
        m, net = self.match, self.match.network
        return {**asdict(self.candidate), "nominal_flops_ratio": m.target, "flops_ratio": self.flops_ratio,
                "equal_cost": m.currency, "cost_ratio": m.ratio,
                "effective": None if net is None else list(m.coefficients(self.candidate.phi)),
                "stage_repeats": None if net is None else [s.repeats for s in net.stages],
                "stage_channels": None if net is None else [s.channels for s in net.stages],
                "resolution": None if net is None else net.resolution, "params": self.params,
                "same_network_as": self.same_network_as, "skipped": m.reason, "seconds": self.seconds}


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    candidates: tuple[PlannedCandidate, ...]
    later: int  # trainings added after the first pass (repeats, rank check, validation)
    later_seconds: float
    images_per_second: float
    device: str
    latency_table: dict | None = None  # equal cost in latency: the table built for the plan (as a study's)

    @property
    def total_seconds(self) -> float:
        return sum(c.seconds for c in self.candidates) + self.later_seconds

    def to_dict(self) -> dict:
        return {"recipe": self.recipe.to_dict(), "candidates": [c.to_dict() for c in self.candidates],
                "later_trainings": self.later, "later_seconds": self.later_seconds,
                "images_per_second": self.images_per_second, "device": self.device,
                "latency_table": self.latency_table, "total_seconds": self.total_seconds}


def seconds_per_image(recipe: Recipe, networks: list, device: str) -> list[float]:
    """Training seconds per image of each network here: one short epoch of a few batches each, on the recipe's
    data and batch size."""
    p = recipe.proxy
    data = load_data(p.data, min(p.train_size, 8 * p.batch_size), min(p.val_size, p.batch_size), p.seed,
                     resolve_device(device))
    return [1 / train(network, data, epochs=1, batch_size=p.batch_size, device=device,
                      seed=p.seed).images_per_second for network in networks]


def plan_search(recipe: Recipe = Recipe(), device: str = "auto", repeats: int = 0,
                validate_phis: tuple[float, ...] = (), check_ranks: int = 0, check_top: int = 5,
                threads: int | None = None, storage: str = "sqlite:///studies/plan.db",
                study_name: str = "plan", budget: Budget | None = None) -> Plan:
    """The candidates `search` would train with these settings, their networks and projected times; trains
    nothing but a few batches of two networks to time this machine. What `search` would refuse (a budget no
    network meets, an impossible equal-cost target) is refused the same way."""
    check_request(recipe, budget, storage, study_name, 1, validate_phis, repeats, check_ranks, check_top)
    use_threads(thread_share(threads))
    proxy = recipe.proxy_network()
    baseline = resolve_spec(recipe.baseline)
    latency = LatencyTable(str(resolve_device(device))) if recipe.equal_cost == "latency" else None
    currency = study_currency(recipe.equal_cost, proxy, baseline, recipe.proxy.batch_size,
                              latency and latency.latency_ms)
    matches = [candidate_network(recipe, proxy, c, currency) for c in recipe.candidates()]
    base = estimate(proxy).macs
    flops = [m.ratio if m.currency == "flops" else None if m.network is None else estimate(m.network).macs / base
             for m in matches]
    table = None
    if latency is not None:
        error = table_error(latency, list({network_key(m.network): full_size(m.network, proxy, baseline)
                                           for m in matches if m.network}.values()))
        table = latency_summary({"latency_table": latency.to_dict(), "latency_error": asdict(error)})
    # Time here is not proportional to FLOPs for networks this small: it is measured on the baseline and on the
    # first candidate at the study's cost, and drawn as a line through the two.
    scaled = next((i for i, m in enumerate(matches) if m.network is not None and m.target > 1), None)
    timed = [proxy] + ([matches[scaled].network] if scaled is not None else [])
    measured = seconds_per_image(recipe, timed, device)
    slope = (measured[-1] - measured[0]) / (flops[scaled] - 1) if scaled is not None else measured[0]
    p = recipe.proxy
    planned, seen = [], {}
    for candidate, match, ratio in zip(recipe.candidates(), matches, flops):
        if match.network is None:
            planned.append(PlannedCandidate(candidate, match, None, None, 0.0, ratio))
            continue
        twin = seen.setdefault(network_key(match.network), len(planned))
        per_image = max(measured[0] + slope * (ratio - 1), 0.5 * measured[0])
        seconds = 0.0 if twin != len(planned) else p.epochs * (p.train_size + EVAL_SHARE * p.val_size) * per_image
        planned.append(PlannedCandidate(candidate, match, estimate(match.network).params,
                                        None if twin == len(planned) else twin, seconds, ratio))
    trained = [c.seconds for c in planned if c.seconds]
    mean = sum(trained) / len(trained) if trained else 0.0
    later = planned_total(recipe, repeats, validate_phis, check_ranks, check_top) - recipe.total()
    long = min(check_top, sum(c.kind == "compound" for c in recipe.candidates())) if check_ranks else 0
    later_seconds = mean * (later - long) + mean * long * check_ranks / p.epochs
    if recipe.sampler == "tpe":  # TPE's proposals are not known before they are made: timed at the mean
        later_seconds += mean * recipe.trials
    return Plan(recipe, tuple(planned), later, later_seconds, 1 / measured[0], str(resolve_device(device)), table)
