"""Vectorised bootstrap vs a per-sample Python loop, measured side by side.

1. B=1000 cluster-bootstrap CIs for all 14 perception subtasks of a synthetic 5,083-item
   result set (Table 9 sizes), plus the perception group mean.
2. The paper's fairness bootstrap: 2000 balanced samples, sex / race / age, 159 subjects.

The loop baselines compute the same statistics one bootstrap sample at a time (numpy inside
the loop, so the ratio measures the loop, not Python arithmetic). Run:
`.venv/bin/python bench/bench_stats.py`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from harness.fairness.analysis import analyse
from harness.stats.bootstrap import derive_seed, subtask_and_group_metrics
from harness.taxonomy import PERCEPTION_SUBTASKS

B = 1000
B_FAIR = 2000
REPEATS = 3


def synthetic_results(seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(subtask, per-item correctness, patient ids): ~2 questions per patient, patient effects."""
    rng = np.random.default_rng(seed)
    out = []
    for sub in PERCEPTION_SUBTASKS:
        n = sub.paper_n
        patients = rng.integers(0, max(1, n // 2), size=n)
        ability = rng.beta(3, 2, size=n // 2 + 1)[patients]
        out.append((sub.name, (rng.random(n) < ability).astype(float), patients.astype(str)))
    return out


def vectorised_cis(results):
    """What `chexbench run` calls: every subtask's CI and the group CI, replicates drawn once."""
    metrics, group = subtask_and_group_metrics({n: (v, c) for n, v, c in results}, B, 1234)
    return {n: m.ci for n, m in metrics.items()}, group.ci


def loop_cis(results):
    """One bootstrap sample per Python iteration: draw patients, gather their items, average."""
    cis, reps_all = {}, []
    for name, values, clusters in results:
        rng = np.random.default_rng(derive_seed(1234, name))
        ids = np.unique(clusters)
        by_patient = [values[clusters == p] for p in ids]
        reps = np.empty(B)
        for b in range(B):
            pick = rng.integers(0, len(ids), size=len(ids))
            reps[b] = np.concatenate([by_patient[k] for k in pick]).mean()
        cis[name] = np.quantile(reps, [0.025, 0.975])
        reps_all.append(reps)
    group = np.quantile(np.mean(reps_all, axis=0), [0.025, 0.975])
    return cis, group


def fairness_table(seed: int = 0) -> pd.DataFrame:
    """159 subjects as in the paper (14 Black, 30 Asian), cardiomegaly vs no finding."""
    rng = np.random.default_rng(seed)
    race = np.array(["Black"] * 14 + ["Asian"] * 30 + ["White"] * 115)
    n = len(race)
    y = rng.random(n) < 0.45
    pred = np.where(rng.random(n) < 0.85, y, ~y)
    return pd.DataFrame(
        {
            "subject": [f"s{i}" for i in range(n)],
            "y": y,
            "pred": pred,
            "race": race,
            "sex": rng.choice(["female", "male"], n),
            "age": rng.choice(["0-65", "65+"], n),
        }
    )


def loop_fairness(table: pd.DataFrame, attributes: list[str]) -> dict[str, np.ndarray]:
    """The balanced bootstrap one sample at a time: per group draw positives and negatives."""
    y, pred = table["y"].to_numpy(), table["pred"].to_numpy()
    out = {}
    for attr in attributes:
        rng = np.random.default_rng(derive_seed(1234, attr))
        groups = sorted(table[attr].unique())
        strata = []
        for g in groups:
            m = (table[attr] == g).to_numpy()
            strata.append((np.flatnonzero(m & y), np.flatnonzero(m & ~y)))
        size = min(min(len(p), len(n)) for p, n in strata)
        f1 = np.empty((B_FAIR, len(groups)))
        for b in range(B_FAIR):
            for j, (pos, neg) in enumerate(strata):
                tp = pred[pos[rng.integers(0, len(pos), size)]].sum()
                fp = pred[neg[rng.integers(0, len(neg), size)]].sum()
                f1[b, j] = 2 * tp / (2 * tp + fp + (size - tp))
        out[attr] = f1
    return out


def best_of(fn, *args):
    times, result = [], None
    for _ in range(REPEATS):
        t = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    results = synthetic_results()
    n_items = sum(len(v) for _, v, _ in results)
    t_vec, (cis_vec, group_vec) = best_of(vectorised_cis, results)
    t_loop, (cis_loop, group_loop) = best_of(loop_cis, results)
    worst = max(
        abs(cis_vec[n][0] - cis_loop[n][0]) + abs(cis_vec[n][1] - cis_loop[n][1]) for n in cis_vec
    )
    print(f"CIs: {len(results)} perception subtasks, {n_items} items, B={B}, cluster bootstrap")
    print(
        f"  vectorised {t_vec * 1e3:8.1f} ms   per-sample loop {t_loop * 1e3:8.1f} ms   "
        f"ratio {t_loop / t_vec:6.1f}x"
    )
    print(
        f"  group-mean CI vectorised [{group_vec[0]:.4f}, {group_vec[1]:.4f}]  loop "
        f"[{group_loop[0]:.4f}, {group_loop[1]:.4f}]; max CI endpoint disagreement {worst:.4f} "
        "(the loop replays the same random stream, so CIs must match exactly)"
    )

    table = fairness_table()
    attrs = ["sex", "race", "age"]
    t_fvec, fres = best_of(lambda: analyse(table, attrs, B=B_FAIR, seed=1234))
    t_floop, floop = best_of(loop_fairness, table, attrs)
    race_vec = fres.attributes["race"].replicates.mean(axis=0)
    print(f"Fairness: {len(table)} subjects, {B_FAIR} balanced samples, sex/race/age")
    print(
        f"  vectorised {t_fvec * 1e3:8.1f} ms   per-sample loop {t_floop * 1e3:8.1f} ms   "
        f"ratio {t_floop / t_fvec:6.1f}x"
    )
    print(
        f"  race F1 means vectorised {np.round(race_vec, 3).tolist()}  loop "
        f"{np.round(floop['race'].mean(axis=0), 3).tolist()}"
    )


if __name__ == "__main__":
    main()
