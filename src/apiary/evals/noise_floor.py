"""The retention noise floor: how many items flip right to wrong when nothing was learned.

Three changes that learn nothing, each compared with the base's scores on the same items:

- batch: the same model, the items in another order and batch size (other padding);
- no-op adapter: a LoRA adapter with B = 0 attached (the model a fresh worker starts as);
- random adapters: a rank-16 LoRA with random A and B, its scale found by bisection so that its
  retention KL matches a target (the KL a trained candidate has). What a random change of that
  size flips is what a candidate at that KL flips without having forgotten anything.

`python -m apiary.evals.noise_floor` measures the floor of the shipped suite (and of the first,
135-item suite) at the KLs issue 16 lists, two seeds each, and writes it to
`retention_data/noise_floor.json`, which the gate reads (`expected_flips`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from apiary.evals import retention
from apiary.evals.forgetting import flips
from apiary.models import adapters
from apiary.models.adapters import LoraSpec

KLS = (0.0002, 0.003, 0.011, 0.038)  # the KLs of issue 16's first measurement
FLOOR_FILE = "noise_floor.json"


@dataclass(frozen=True)
class FloorPoint:
    suite: str
    change: str  # "batch", "no-op adapter" or "random adapter"
    seed: int
    target_kl: float  # the KL the random adapter was scaled to (0 for batch and no-op)
    kl: float  # the change's retention KL (0 for batch and no-op)
    items: int
    right_to_wrong: int
    wrong_to_right: int


@dataclass
class RandomAdapter:
    """A LoRA adapter with random A and B (seeded); `set_scale` sets B to scale x its draw."""
    model: object  # the PEFT model
    directions: dict[str, torch.Tensor]  # lora_B parameter name -> its random draw

    def set_scale(self, scale: float) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in self.directions:
                    p.copy_(scale * self.directions[name])


def random_adapter(model, seed: int, rank: int = 16) -> RandomAdapter:
    """`model` with a rank-`rank` LoRA whose A and B are drawn at random (the change grows with
    the scale, the KL about quadratically)."""
    peft_model = adapters.attach(model, LoraSpec(rank=rank, alpha=2 * rank))
    gen = torch.Generator().manual_seed(seed)
    directions = {}
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            if "lora_B" in name:
                directions[name] = p.detach().clone()
    return RandomAdapter(model=peft_model, directions=directions)


def scale_to_kl(adapter: RandomAdapter, tokenizer, replies: list[list[int]], target: float, tolerance: float = 0.15,
                steps: int = 12, search_prompts: int | None = None) -> tuple[float, float]:
    """Bisect (in log scale) for the scale whose retention KL is within `tolerance` (relative) of
    `target`; returns (scale, KL). The first guess assumes KL grows with the square of the scale.
    `search_prompts`: search on the first few retention prompts only (cheaper), then measure the
    KL at the scale found on all of them (the KL returned)."""
    search = replies[:search_prompts] if search_prompts else replies

    def kl_at(scale: float, on: list[list[int]] = search) -> float:
        adapter.set_scale(scale)
        return retention.retention_kl(adapter.model, None, tokenizer, on)

    scale, kl = 0.01, kl_at(0.01)
    low, high = 0.0, math.inf
    for _ in range(steps):
        if abs(kl - target) <= tolerance * target:
            break
        if kl < target:
            low = scale
        else:
            high = scale
        guess = scale * math.sqrt(target / max(kl, 1e-12))  # the quadratic guess, kept inside the bracket
        scale = guess if low < guess < high else (math.sqrt(low * high) if low > 0 and high < math.inf
                                                 else (low * 2 if high == math.inf else high / 2))
        kl = kl_at(scale)
    return scale, (kl if search is replies else kl_at(scale, replies))


def batch_floor(core, suite: list[dict], base_scores: list[float], seed: int, name: str) -> FloorPoint:
    """Flips from another order and batch size alone (the model unchanged)."""
    order = list(range(len(suite)))
    random.Random(seed).shuffle(order)
    shuffled = retention.item_scores(core.model, core.tokenizer, core.stop_token_ids, [suite[i] for i in order],
                                     batch=retention.BATCH - 16)
    scores = [0.0] * len(suite)
    for position, i in enumerate(order):
        scores[i] = shuffled[position]
    return _point(name, "batch", seed, 0.0, base_scores, scores)


def _point(suite: str, change: str, seed: int, kl: float, before: list[float], after: list[float],
           target_kl: float = 0.0) -> FloorPoint:
    f = flips(before, after)
    return FloorPoint(suite=suite, change=change, seed=seed, target_kl=target_kl, kl=kl, items=f["items"],
                      right_to_wrong=f["right_to_wrong"], wrong_to_right=f["wrong_to_right"])


def measure(core, suites: dict[str, list[dict]], kls=KLS, seeds=(0, 1), log=print) -> list[FloorPoint]:
    """The floor of each suite: batch composition and a no-op adapter per seed, then random
    adapters at each target KL per seed (one adapter per (KL, seed), scored on every suite)."""
    replies = retention.references(core, _cache())
    base = {name: retention.item_scores(core.model, core.tokenizer, core.stop_token_ids, s) for name, s in suites.items()}
    points = [batch_floor(core, s, base[name], seed, name) for name, s in suites.items() for seed in seeds]
    noop = adapters.attach(core.model, LoraSpec())
    try:
        points += [_point(name, "no-op adapter", 0, 0.0, base[name],
                          retention.item_scores(noop, core.tokenizer, core.stop_token_ids, s)) for name, s in suites.items()]
    finally:
        adapters.detach(noop)
    for kl_target in kls:
        for seed in seeds:
            adapter = random_adapter(core.model, seed)
            try:
                scale, kl = scale_to_kl(adapter, core.tokenizer, replies, kl_target, search_prompts=8)
                for name, s in suites.items():
                    scores = retention.item_scores(adapter.model, core.tokenizer, core.stop_token_ids, s)
                    points.append(_point(name, "random adapter", seed, kl, base[name], scores, kl_target))
                    log(f"{name}: KL {kl:.4f} (scale {scale:.3g}, seed {seed}): {points[-1].right_to_wrong} flips")
            finally:
                adapters.detach(adapter.model)
    return points


def _cache():
    from apiary.models.core import cache_dir
    return cache_dir()


def suite_key(suite: list[dict]) -> str:
    return hashlib.sha1(json.dumps([it["question"] for it in suite]).encode()).hexdigest()[:12]


def expected_flips(kl: float | None, suite: list[dict], table: dict | None = None) -> float | None:
    """Right-to-wrong flips a random change of retention KL `kl` gives on `suite`: the measured
    flip rate (mean over seeds) interpolated linearly in KL between the measured KLs (0 flips at
    KL 0, the largest measured KL's rate beyond it, so a larger change gets no larger allowance).
    None when no floor was measured for this suite (`table` defaults to the shipped one)."""
    table = table if table is not None else load_table()
    if kl is None or not table or table.get("suite_key") != suite_key(suite):
        return None
    items = len(suite)
    points = [(0.0, 0.0)] + sorted((p["kl"], p["flip_rate"]) for p in table["points"])
    if kl >= points[-1][0]:
        return points[-1][1] * items
    for (k0, r0), (k1, r1) in zip(points, points[1:]):
        if k0 <= kl <= k1:
            return (r0 + (r1 - r0) * (kl - k0) / (k1 - k0 or 1.0)) * items
    return 0.0


def load_table() -> dict | None:
    path = resources.files("apiary.evals").joinpath("retention_data", FLOOR_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def floor_table(points: list[FloorPoint], suite: str) -> dict:
    """The gate's table for one suite: per target KL, the mean measured KL and flip rate over seeds."""
    mine = [p for p in points if p.suite == suite and p.change == "random adapter"]
    rows = []
    for target in sorted({p.target_kl for p in mine}):
        at = [p for p in mine if p.target_kl == target]
        rows.append({"target_kl": target, "kl": sum(p.kl for p in at) / len(at),
                     "flip_rate": sum(p.right_to_wrong / p.items for p in at) / len(at)})
    return {"suite": suite, "items": mine[0].items if mine else 0, "points": rows}


def markdown(points: list[FloorPoint]) -> str:
    """The floor as a table: one row per change (and target KL), one column per suite, the
    right-to-wrong flips of each seed (and the measured KLs)."""
    suites = list(dict.fromkeys(p.suite for p in points))
    rows: dict[tuple[str, float], dict[str, list[FloorPoint]]] = {}
    for p in points:
        rows.setdefault((p.change, p.target_kl), {}).setdefault(p.suite, []).append(p)
    items = {p.suite: p.items for p in points}
    head = "| change | target KL | " + " | ".join(f"{s} ({items[s]} items): flips (KL)" for s in suites) + " |"
    lines = [head, "|" + " --- |" * (2 + len(suites))]
    for (change, target), cells in rows.items():
        text = [", ".join(f"{p.right_to_wrong} ({p.kl:.4f})" if change == "random adapter" else f"{p.right_to_wrong}"
                          for p in cells.get(s, [])) for s in suites]
        lines.append(f"| {change} | {target:g} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    """Measure the floor of the shipped suite and of the first 135-item suite; print the table and
    write the shipped suite's floor (the gate's) to retention_data/noise_floor.json."""
    from apiary.models.core import load_core

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--kls", type=float, nargs="+", default=list(KLS))
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.monotonic()
    suites = {"robust": retention.items(), "first": retention.items(retention.FIRST_SUITE)}
    points = measure(load_core(), suites, tuple(args.kls), tuple(args.seeds))
    print(markdown(points))
    print(f"measured in {time.monotonic() - started:.0f} s")
    if not args.no_write:
        path = resources.files("apiary.evals").joinpath("retention_data", FLOOR_FILE)
        table = floor_table(points, "robust") | {"suite_key": suite_key(suites["robust"]), "seeds": list(args.seeds),
                                                  "measured": [asdict(p) for p in points]}
        path.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
