"""CheXbert label F1 through `f1chexbert`, with its checkpoint checked key by key.

f1chexbert loads `chexbert.pth` with `strict=False`: a wrong or truncated file leaves the
labeler with random weights and produces plausible-looking nonsense. We compare the file's
keys and shapes with the model ourselves and stop on any difference.
"""

from __future__ import annotations

import ast
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.text_metrics.cache import (
    CHEXBERT_TOKENIZER,
    ScorerError,
    ScorerFile,
    hf_dir,
    hub_ids_resolve_to,
    require,
)

# Keys old transformers versions saved as buffers; current BertModel does not persist them.
_TOLERATED_EXTRA_KEYS = {"bert.embeddings.position_ids"}


@dataclass
class CheXbertOutput:
    accuracy: float  # f1chexbert's: exact match over the 5 labels
    per_sample_exact5: list[float]
    report14: dict
    report5: dict
    hyp_labels: np.ndarray  # (n, 14) 0/1, from the package's own labeling
    ref_labels: np.ndarray
    label_names: list[str]
    index5: list[int]


def checkpoint_path(root: Path) -> Path:
    return root / "chexbert" / "chexbert.pth"


def verify_checkpoint(model, path: Path) -> None:
    """Raise ScorerError unless every model weight is in the file with the right shape."""
    import torch

    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = raw.get("model_state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ScorerError(f"{path}: not a CheXbert checkpoint (no model_state_dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - _TOLERATED_EXTRA_KEYS)
    mismatched = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or mismatched:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        raise ScorerError(
            f"{path}: checkpoint does not match the CheXbert labeler "
            f"(missing {len(missing)}: {few(missing)}; unexpected {len(unexpected)}: "
            f"{few(unexpected)}; wrong shape {len(mismatched)}: {few(mismatched)}). "
            "f1chexbert would silently score with random weights; re-download chexbert.pth "
            "with `chexbench scorers fetch --only chexbert`."
        )


class CheXbertScorer:
    def __init__(self, root: Path, device: str):
        ckpt = require(
            ScorerFile(
                "chexbert",
                "CheXbert labeler checkpoint",
                checkpoint_path(root),
                "hub:StanfordAIMI/RRG_scorers",
            )
        )
        require(
            ScorerFile(
                "chexbert",
                "CheXbert tokenizer/config",
                hf_dir(root) / CHEXBERT_TOKENIZER,
                f"hub:{CHEXBERT_TOKENIZER}",
            )
        )
        self.checkpoint = ckpt
        import f1chexbert.f1chexbert as pkg

        pkg.CACHE_DIR = str(ckpt.parent)  # the package reads <CACHE_DIR>/chexbert.pth
        with hub_ids_resolve_to(root):
            self._scorer = pkg.F1CheXbert(device=device)
        verify_checkpoint(self._scorer.model, ckpt)
        self._pkg = pkg

    def score(self, predictions: list[str], references: list[str]) -> CheXbertOutput:
        with tempfile.TemporaryDirectory(prefix="chexbert-labels-") as tmp:
            # The package writes the labels it computed; reading them back gives per-sample
            # labels for the bootstrap without labeling every report twice.
            self._scorer.refs_filename = str(Path(tmp) / "refs.txt")
            self._scorer.hyps_filename = str(Path(tmp) / "hyps.txt")
            with warnings.catch_warnings():  # sklearn's zero_division notes, expected here
                warnings.simplefilter("ignore")
                accuracy, exact5, cr14, cr5 = self._scorer(predictions, references)
            refs = _read_labels(Path(tmp) / "refs.txt")
            hyps = _read_labels(Path(tmp) / "hyps.txt")
        return CheXbertOutput(
            accuracy=float(accuracy),
            per_sample_exact5=[float(x) for x in exact5],
            report14=cr14,
            report5=cr5,
            hyp_labels=hyps,
            ref_labels=refs,
            label_names=list(self._scorer.target_names),
            index5=[int(i) for i in self._scorer.target_names_5_index],
        )

    def embeddings(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """CheXbert [CLS] embeddings (RadCliQ's s_emb input), from the verified labeler."""
        import pandas as pd
        import torch

        pkg, model = self._pkg, self._scorer.model
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                ids = pkg.tokenize(
                    pd.Series(texts[start : start + batch_size]), self._scorer.tokenizer
                )
                lengths = [len(x) for x in ids]
                batch = torch.zeros(len(ids), max(lengths), dtype=torch.long)
                for row, x in enumerate(ids):
                    batch[row, : len(x)] = torch.tensor(x)
                mask = pkg.generate_attention_masks(batch, lengths, self._scorer.device)
                hidden = model.bert(batch.to(self._scorer.device), attention_mask=mask)[0]
                out.append(hidden[:, 0, :].float().cpu().numpy())
        return np.concatenate(out, axis=0)


def _read_labels(path: Path) -> np.ndarray:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return np.array([ast.literal_eval(ln) for ln in lines], dtype=int).reshape(len(lines), -1)
