"""How well can one projection tell the hetero-coordination number at all?

The networks read the HCN of the imaged aggregate off its image with a
median error of about 31 % (docs/results.md).  This script asks how much
better an observer could do that is handed the image's geometry outright:
every particle's projected centre, radius and material, in the projection
the item was imaged in (its stored rotation), but not its depth.

A projection shortens distances, so every contact lies among the pairs
whose discs meet (:func:`heteroagg.projected_contact_candidates`); which of
those candidates touch in 3D is what the projection hides.  The observer
learns it from aggregates of a training set:

1. a gradient-boosted classifier gives each candidate pair its probability
   of being a contact, from the pair's projected distance over the sum of
   the radii, both radii, the materials, how many candidates each particle
   has and shares, whether the pair is a bridge of the candidate graph (an
   aggregate is connected, so a bridge must be a contact) and the
   aggregate's size; a second pass (``--passes 2``, the default) also sees the
   first pass's probabilities of the other candidates at the pair's two
   particles;
2. a gradient-boosted regressor turns each aggregate's summary (N, the
   number of WO3 particles, the materials' mean radii, counts of candidates
   and bridges by distance and material, the classifier's expected numbers
   of contacts and of hetero contacts) into the number of hetero contacts.

Two more regressors are told the aggregate's θ, once with the projection's
summary and once without: how much the projection adds to knowing θ.

The classifier and the regressor learn on disjoint aggregates; the choice
between the estimates is made on held-out training aggregates, and the
test set is scored once per training size.  Each observer knows the
projected geometry exactly, which a network must first read off a noisy
image: its error says how close to the HCN a method reading one projection
can be expected to come, given this much to learn from.

It needs scikit-learn and networkx (``pip install scikit-learn networkx``).
The figures of
docs/results.md came from::

    python benchmarks/projected_contacts.py --train-data runs/train300k \\
        --items 20000 60000 200000 --test-data runs/test2k \\
        --predictions runs/main18_eval_sym/predictions.npz \\
        --report runs/main18_eval_sym/report.json \\
        --out runs/projected_contacts.json --plot docs/images/projected_contacts.png

and, for the single-pass classifier, the same with ``--passes 1``.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool

import networkx as nx
import numpy as np

from heteroagg import descriptors, projected_contact_candidates
from heteroagg.data import SyntheticDataset
from heteroagg.learn.evaluation import relative_error, summarize_relative_errors
from heteroagg.model import ModelParams

#: Column of :func:`aggregate_summary` that holds the classifier's expected HCN.
EXPECTED_HCN = 10
#: Edges of the bins of a candidate's projected distance over r_i + r_j.
DISTANCE_BINS = (0.0, 0.6, 0.8, 0.9, 0.95, 0.98, 1.01)

#: The estimates that are told the aggregate's θ (never the chosen ones): with
#: the projection, and θ alone (N included) without it.
TOLD_THETA = "regressor told θ"
THETA_ONLY = "θ alone, no projection"
#: The estimates from the projection alone, among which the held-out set chooses.
BLIND = ("expected hetero contacts (classifier)", "regressor")

_STATE: dict = {}


def _start(path: str) -> None:
    dataset = SyntheticDataset(path)
    _STATE.update(dataset=dataset, rotations=dataset.rotations[:], failed=dataset.failed[:])


def pair_table(item: int) -> dict | None:
    """The candidates of one item with their features and labels; None if it failed."""
    s = _STATE
    if s["failed"][item]:
        return None
    agg = s["dataset"].aggregate(item)
    rotation = s["rotations"][item]
    candidates = projected_contact_candidates(agg, rotation)
    d = descriptors(agg)
    n = agg.radii.size
    contact = np.zeros(len(candidates), dtype=bool)
    if len(d.contacts):
        code = np.sort(d.contacts, axis=1) @ np.array([n, 1])
        wanted = candidates @ np.array([n, 1])
        contact = np.isin(wanted, code)
        if contact.sum() != len(d.contacts):
            raise RuntimeError(f"item {item}: a contact is not among the candidates")
    i, j = candidates[:, 0], candidates[:, 1]
    xy = (agg.centers @ rotation.T)[:, :2]
    radii = agg.radii
    distance = np.linalg.norm(xy[i] - xy[j], axis=1)
    degree = np.bincount(candidates.ravel(), minlength=n)
    adjacency = np.zeros((n, n), dtype=np.int32)
    adjacency[i, j] = adjacency[j, i] = 1
    shared = np.einsum("mk,mk->m", adjacency[i], adjacency[j])
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(candidates.tolist())
    bridges = {tuple(sorted(e)) for e in nx.bridges(graph)}
    bridge = np.array([(a, b) in bridges for a, b in candidates.tolist()], dtype=bool)
    is_w = agg.materials == 1
    features = np.stack(
        [
            distance / (radii[i] + radii[j]),
            np.minimum(radii[i], radii[j]),
            np.maximum(radii[i], radii[j]),
            is_w[i].astype(float) + is_w[j],
            np.minimum(degree[i], degree[j]),
            np.maximum(degree[i], degree[j]),
            shared,
            distance < np.abs(radii[i] - radii[j]),
            bridge,
            np.full(len(candidates), n),
            np.full(len(candidates), 2.0 * len(candidates) / n),
        ],
        axis=1,
    ).astype(np.float32)
    return {
        "item": item,
        "features": features,
        "pairs": candidates,
        "contact": contact,
        "bridge": bridge,
        "hetero": is_w[i] != is_w[j],
        "n": n,
        "n_w": int(is_w.sum()),
        "hcn": float(d.hetero_coordination_number),
        "theta": np.array([float(getattr(agg.params, f)) for f in ModelParams.field_names()]),
        "radius_ti": float(np.exp(np.log(radii[~is_w]).mean())) if (~is_w).any() else 0.0,
        "radius_w": float(np.exp(np.log(radii[is_w]).mean())) if is_w.any() else 0.0,
    }


def collect(path: str, items: list[int], processes: int) -> list[dict]:
    """The pair tables of the items that did not fail."""
    with Pool(processes, initializer=_start, initargs=(path,)) as pool:
        tables = pool.map(pair_table, items, chunksize=64)
    return [t for t in tables if t is not None]


def aggregate_summary(tables: list[dict], probability: list[np.ndarray]) -> np.ndarray:
    """One row of features per aggregate for the regressor."""
    rows = []
    for t, p in zip(tables, probability, strict=True):
        ratio = t["features"][:, 0]
        het = t["hetero"]
        hist_het = np.histogram(ratio[het], DISTANCE_BINS)[0]
        hist_homo = np.histogram(ratio[~het], DISTANCE_BINS)[0]
        rows.append(
            [
                t["n"],
                t["n_w"],
                t["radius_ti"],
                t["radius_w"],
                len(ratio),
                int(het.sum()),
                int(t["bridge"].sum()),
                int((t["bridge"] & het).sum()),
                float(p.sum()),
                float(p[het].sum()),
                2.0 * float(p[het].sum()) / t["n"],
                *hist_het,
                *hist_homo,
            ]
        )
    return np.asarray(rows, dtype=np.float64)


def _stack(tables: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([t["features"] for t in tables]),
        np.concatenate([t["contact"] for t in tables]),
    )


def neighbour_features(table: dict, p: np.ndarray) -> np.ndarray:
    """For each candidate, what the other candidates of its two particles look like.

    The sums of the other candidates' contact probabilities at the pair's two
    particles, and the numbers of them more likely than not to be contacts,
    each as (lower, higher).
    """
    pairs, n = table["pairs"], table["n"]
    likely = (p > 0.5).astype(float)
    rows = []
    for weight in (p, likely):
        total = np.bincount(pairs[:, 0], weight, n) + np.bincount(pairs[:, 1], weight, n)
        other = np.stack([total[pairs[:, 0]], total[pairs[:, 1]]], axis=1) - weight[:, None]
        rows += [other.min(axis=1), other.max(axis=1)]
    return np.stack(rows, axis=1).astype(np.float32)


class PairModel:
    """Contact probabilities of the candidate pairs, in one or two passes.

    The second pass sees, next to each pair's own features, the first pass's
    probabilities of the other candidates at its two particles
    (:func:`neighbour_features`); it learns from out-of-fold first-pass
    probabilities, two halves of the tables predicting each other.
    """

    def __init__(self, passes: int, seed: int) -> None:
        self.passes, self.seed = passes, seed

    def _classifier(self, features: np.ndarray, contact: np.ndarray):
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.1, max_leaf_nodes=63, random_state=self.seed
        )
        return model.fit(features, contact)

    @staticmethod
    def _predict(models: list, tables: list[dict], extra: list[np.ndarray] | None = None):
        features, _ = _stack(tables)
        if extra is not None:
            features = np.hstack([features, np.concatenate(extra)])
        p = np.mean([m.predict_proba(features)[:, 1] for m in models], axis=0)
        return np.split(p, np.cumsum([len(t["contact"]) for t in tables])[:-1])

    def fit(self, tables: list[dict]) -> PairModel:
        if self.passes == 1:
            self.first = [self._classifier(*_stack(tables))]
            return self
        halves = tables[: len(tables) // 2], tables[len(tables) // 2 :]
        self.first = [self._classifier(*_stack(h)) for h in halves]
        out_of_fold = self._predict([self.first[1]], halves[0]) + self._predict(
            [self.first[0]], halves[1]
        )
        features, contact = _stack(tables)
        extra = [neighbour_features(t, p) for t, p in zip(tables, out_of_fold, strict=True)]
        self.second = self._classifier(np.hstack([features, np.concatenate(extra)]), contact)
        return self

    def probabilities(self, tables: list[dict]) -> list[np.ndarray]:
        first = self._predict(self.first, tables)
        if self.passes == 1:
            return first
        extra = [neighbour_features(t, p) for t, p in zip(tables, first, strict=True)]
        return self._predict([self.second], tables, extra)


def score(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The HCN's relative errors summarised as ``heteroagg evaluate`` reports them."""
    return summarize_relative_errors(relative_error(estimate, truth))


def observe(train: list[dict], test: list[dict], held_out: int, seed: int, passes: int = 2) -> dict:
    """Fit the observers on ``train`` (the first ``held_out`` held out) and score ``test``."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    held = train[:held_out]
    rest = train[held_out:]
    pair_part, summary_part = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    contact = np.concatenate([t["contact"] for t in pair_part])
    pair_model = PairModel(passes, seed).fit(pair_part)

    def summaries(tables: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = aggregate_summary(tables, pair_model.probabilities(tables))
        truth = np.array([t["hcn"] for t in tables])
        n = np.array([t["n"] for t in tables], dtype=float)
        return x, truth, n, np.array([t["theta"] for t in tables])

    def regressor():
        return HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, random_state=seed)

    x_fit, hcn_fit, n_fit, theta_fit = summaries(summary_part)
    blind = regressor().fit(x_fit, hcn_fit * n_fit / 2.0)
    told = regressor().fit(np.hstack([x_fit, theta_fit]), hcn_fit * n_fit / 2.0)
    theta_only = regressor().fit(theta_fit, hcn_fit)

    def estimates(tables: list[dict]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        x, truth, n, theta = summaries(tables)
        return {
            "expected hetero contacts (classifier)": x[:, EXPECTED_HCN],
            "regressor": np.maximum(2.0 * blind.predict(x) / n, 0.0),
            TOLD_THETA: np.maximum(2.0 * told.predict(np.hstack([x, theta])) / n, 0.0),
            THETA_ONLY: np.maximum(theta_only.predict(theta), 0.0),
        }, truth

    held_estimates, held_truth = estimates(held)
    held_scores = {k: score(v, held_truth) for k, v in held_estimates.items()}
    chosen = min(BLIND, key=lambda k: held_scores[k]["median_abs"])
    test_estimates, test_truth = estimates(test)
    n_w = np.array([t["n_w"] for t in test])
    by_wo3 = {}
    for name, lo, hi in (("1-3", 1, 3), ("4-10", 4, 10), (">10", 11, 10**6)):
        pick = (n_w >= lo) & (n_w <= hi)
        by_wo3[name] = score(test_estimates[chosen][pick], test_truth[pick])
    return {
        "aggregates": {
            "pairs": len(pair_part),
            "regressor": len(summary_part),
            "held_out": len(held),
        },
        "candidate_pairs_in_contact": float(contact.mean()),
        "held_out": held_scores,
        "chosen": chosen,
        "test": {k: score(v, test_truth) for k, v in test_estimates.items()},
        "test_chosen_by_wo3_count": by_wo3,
    }


def plot(results: dict[int, dict], report: dict | None, path: str) -> None:
    """Test median error of the observers against the training aggregates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines = (
        ("projection (chosen)", None, "C0"),
        ("projection and θ", TOLD_THETA, "C1"),
        ("θ alone", THETA_ONLY, "C2"),
    )
    for label, key, colour in lines:
        values = [
            100 * results[s]["test"][key or results[s]["chosen"]]["median_abs"] for s in sizes
        ]
        ax.plot(sizes, values, "o-", color=colour, label=f"observer: {label}")
    levels = [(15.0, "target", "k", ":")]
    if report is not None:
        hcn = "hetero_coordination_number"
        heads = report["direct_descriptor_heads"][hcn]["relative"]["median_abs"]
        twins = report["descriptors"][hcn]
        levels += [
            (100 * heads, "network, direct head", "C3", "--"),
            (100 * twins["twin_mean"]["median_abs"], "network, twins at θ̂", "C4", "--"),
            (100 * twins["true_theta_mean"]["median_abs"], "twins at the true θ", "C5", "--"),
        ]
    for value, label, colour, style in levels:
        ax.axhline(value, color=colour, linestyle=style, label=f"{label} ({value:.1f} %)")
    ax.set_xscale("log")
    ax.set_xlabel("training items")
    ax.set_ylabel("HCN, median relative error on the test set (%)")
    ax.set_ylim(0, None)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("The HCN from the exact projected geometry")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-data", required=True, help="a dataset to learn from")
    parser.add_argument("--items", type=int, nargs="+", default=[60000],
                        help="training items used; several give a learning curve")  # fmt: skip
    parser.add_argument("--held-out", type=int, default=5000, help="of those, held out to choose")
    parser.add_argument("--test-data", required=True, help="the test set, scored once per size")
    parser.add_argument(
        "--predictions", default=None, help="heteroagg evaluate's predictions.npz: its test items"
    )
    parser.add_argument(
        "--report", default=None, help="heteroagg evaluate's report.json: the network's errors"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, choices=(1, 2), default=2,
                        help="classifier passes: 2 adds the neighbours' probabilities")  # fmt: skip
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--plot", default=None, help="draw the learning curve into this PNG")
    args = parser.parse_args()
    if min(args.items) <= 2 * args.held_out:
        parser.error("every --items must exceed twice --held-out")
    try:
        import sklearn  # noqa: F401  (the classifier and the observer use it, after the pair tables)
    except ImportError:
        raise SystemExit("this script needs scikit-learn: pip install scikit-learn") from None

    start = time.perf_counter()
    train = collect(args.train_data, list(range(max(args.items))), args.processes)
    test_items = list(range(len(SyntheticDataset(args.test_data))))
    if args.predictions:
        test_items = [int(i) for i in np.load(args.predictions)["item"]]
    test = collect(args.test_data, test_items, args.processes)
    print(f"pair tables: {len(train)} training and {len(test)} test aggregates, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip

    results = {}
    for size in sorted(set(args.items)):
        usable = [t for t in train if t["item"] < size]
        results[size] = result = observe(usable, test, args.held_out, args.seed, args.passes)
        print(f"\n{size} training items ({len(usable)} usable), "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        print(f"{'estimate':<40} {'held-out median':>16} {'test median':>12} {'within 15 %':>12}")
        for k, score in result["test"].items():
            mark = " *" if k == result["chosen"] else ""
            print(f"{k + mark:<40} {result['held_out'][k]['median_abs']:>16.1%} "
                  f"{score['median_abs']:>12.1%} {score['within_15pct']:>12.1%}")  # fmt: skip
        for k, v in result["test_chosen_by_wo3_count"].items():
            print(f"  N_W {k}: {v['n']} aggregates, median {v['median_abs']:.1%}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"test_aggregates": len(test), "sizes": results,
                           "seconds": time.perf_counter() - start}, f, indent=2)  # fmt: skip
    if args.plot:
        report = json.loads(open(args.report).read()) if args.report else None
        plot(results, report, args.plot)


if __name__ == "__main__":
    main()
