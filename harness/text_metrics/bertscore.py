"""BERTScore F1 through `bert-score`, with the local-model rescaling trap closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.text_metrics.cache import ScorerFile, ScorerUnavailable, bertscore_model_dir, require
from harness.text_metrics.config import BertScoreConfig


def packaged_baseline(model: str, lang: str) -> Path:
    import bert_score

    return Path(bert_score.__file__).parent / "rescale_baseline" / lang / f"{model}.tsv"


def resolve_baseline(cfg: BertScoreConfig) -> Path | None:
    """The baseline file bert-score must be given explicitly for a local model folder.

    bert-score only finds its packaged baseline by hub name; handed a folder it silently
    returns unrescaled scores. We always load from a folder, so we always pass the file.
    """
    if not cfg.rescale_with_baseline:
        return None
    path = Path(cfg.baseline_path) if cfg.baseline_path else packaged_baseline(cfg.model, cfg.lang)
    if not path.is_file():
        raise ScorerUnavailable(
            f"no BERTScore rescaling baseline for {cfg.model!r} (lang {cfg.lang})",
            path,
            "set bertscore.baseline_path to a bert-score baseline TSV, or rescale_with_baseline=false",
        )
    return path


def describe(cfg: BertScoreConfig) -> dict[str, Any]:
    out = cfg.model_dump()
    out["package"] = "bert-score"
    return out


class BertScorer:
    def __init__(
        self,
        cfg: BertScoreConfig,
        root: Path,
        device: str,
        batch_size: int,
        scorer_name: str = "bertscore",
    ):
        model_dir = require(
            ScorerFile(
                scorer_name,
                f"BERTScore model ({cfg.model})",
                bertscore_model_dir(root, cfg),
                f"hub:{cfg.model}",
            )
        )
        baseline = resolve_baseline(cfg)
        from bert_score import BERTScorer

        self.cfg, self.batch_size = cfg, batch_size
        self.baseline_file = baseline
        self._scorer = BERTScorer(
            model_type=str(model_dir),
            num_layers=cfg.num_layers,
            idf=False,
            device=device,
            lang=cfg.lang,
            rescale_with_baseline=cfg.rescale_with_baseline,
            baseline_path=str(baseline) if baseline else None,
            batch_size=batch_size,
        )

    def f1(self, predictions: list[str], references: list[str]) -> list[float]:
        """Per-pair F1; an empty side scores raw F1 = 0 (bert-score crashes on it), rescaled
        like every other pair."""
        keep = [
            i
            for i, (p, r) in enumerate(zip(predictions, references, strict=True))
            if p.strip() and r.strip()
        ]
        raw_zero = 0.0
        if self.cfg.rescale_with_baseline:
            base_f = float(self._scorer.baseline_vals[2])
            raw_zero = (0.0 - base_f) / (1.0 - base_f)
        out = [raw_zero] * len(predictions)
        if keep:
            _, _, f = self._scorer.score(
                [predictions[i] for i in keep],
                [references[i] for i in keep],
                batch_size=self.batch_size,
            )
            for i, v in zip(keep, f.tolist(), strict=True):
                out[i] = float(v)
        return out
