"""RadGraph F1 through `radgraph` (simple, partial = RG_ER, complete), plus RadCliQ's input.

Case: radgraph 0.1.18 compares entity tokens case-sensitively at the simple and partial
levels but lowercases relation tokens at the complete level. We score cleaned text, which
is already lowercased, so all three levels are effectively case-insensitive and agree with
each other on casing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.text_metrics.cache import (
    ScorerFile,
    hf_dir,
    hub_ids_resolve_to,
    radgraph_encoder_id,
    require,
)


@dataclass
class RadGraphOutput:
    simple: list[float]
    partial: list[float]
    complete: list[float]
    entity_relation_mean: list[float]  # RadCliQ-v1's "radgraph_combined" input


class RadGraphScorer:
    def __init__(self, root: Path, model_type: str, device: str):
        model_dir = require(
            ScorerFile(
                "radgraph",
                f"RadGraph model ({model_type})",
                root / "radgraph" / model_type,
                f"hub:StanfordAIMI/RRG_scorers:{model_type}.tar.gz",
            )
        )
        for name in ("config.json", "weights.th", "vocabulary"):
            require(
                ScorerFile(
                    "radgraph",
                    f"RadGraph model file {name}",
                    model_dir / name,
                    f"hub:StanfordAIMI/RRG_scorers:{model_type}.tar.gz",
                )
            )
        encoder = radgraph_encoder_id(model_dir)
        if encoder and not Path(encoder).is_absolute():
            require(
                ScorerFile("radgraph", "RadGraph encoder", hf_dir(root) / encoder, f"hub:{encoder}")
            )
        self.model_dir, self.encoder = model_dir, encoder
        from radgraph import F1RadGraph

        cuda = 0 if device.startswith("cuda") else -1
        with hub_ids_resolve_to(root):
            self._scorer = F1RadGraph(
                reward_level="all",
                model_type=model_type,
                model_cache_dir=str(root / "radgraph"),
                cuda=cuda,
            )

    def score(self, predictions: list[str], references: list[str]) -> RadGraphOutput:
        _, (simple, partial, complete), hyp_ann, ref_ann = self._scorer(
            refs=list(references), hyps=list(predictions)
        )
        combined = [0.0] * len(predictions)
        non_empty = [
            i for i, (p, r) in enumerate(zip(predictions, references, strict=True)) if p and r
        ]
        for i, h, r in zip(non_empty, hyp_ann, ref_ann, strict=True):
            combined[i] = (
                _set_f1(_entities(r), _entities(h)) + _set_f1(_relations(r), _relations(h))
            ) / 2
        return RadGraphOutput(
            [float(x) for x in simple],
            [float(x) for x in partial],
            [float(x) for x in complete],
            combined,
        )


def _entities(ann: dict) -> set:
    return {(e["tokens"], e["label"]) for e in ann["entities"].values()}


def _relations(ann: dict) -> set:
    ents = ann["entities"]
    return {
        ((e["tokens"], e["label"]), (ents[t]["tokens"], ents[t]["label"]), rel)
        for e in ents.values()
        for rel, t in e["relations"]
        if t in ents
    }


def _set_f1(ref: set, hyp: set) -> float:
    """Entity or relation F1 as CXR-Report-Metric defines it for RadCliQ (0 when empty)."""
    tp = len(ref & hyp)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(hyp), tp / len(ref)
    return 2 * precision * recall / (precision + recall)
