"""RadCliQ-v1 (Yu et al. 2023): a fixed linear model over four per-report scores.

It is only meaningful on the exact inputs it was fitted on (CXR-Report-Metric): RadGraph
entity/relation F1 mean, BERTScore with distilroberta-base rescaled, CheXbert embedding
cosine (s_emb) and BLEU-2. Lower is better; ReXrank ranks by 1 / mean.
"""

from __future__ import annotations

import numpy as np

COLUMNS = ("radgraph", "bertscore", "semb", "bleu2")
MEAN = np.array([0.53792312, 0.61757256, 0.76479421, 0.44738335])
SCALE = np.array([0.30282584, 0.22430938, 0.25394391, 0.29892717])
COEF = np.array([-3.77083683e-01, -3.70300100e-01, -2.52616218e-01, 4.31504841e-12])
INTERCEPT = 2.46655256e-10


def radcliq_v1(
    radgraph: list[float], bertscore: list[float], semb: list[float], bleu2: list[float]
) -> list[float]:
    x = np.column_stack([radgraph, bertscore, semb, bleu2]).astype(float)
    return (((x - MEAN) / SCALE) @ COEF + INTERCEPT).tolist()


def cosine(a: np.ndarray, b: np.ndarray) -> list[float]:
    dot = np.einsum("nd,nd->n", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norms > 0, dot / norms, 0.0).tolist()


def _bleu_tokens(text: str) -> list[str]:
    return [t for t in text.lower().replace(".", " .").split(" ") if t]


def bleu2(predictions: list[str], references: list[str]) -> list[float]:
    """Sentence BLEU-2 (uniform weights, no smoothing) with CXR-Report-Metric's tokenisation.

    The original uses fast_bleu; we use nltk (already a radgraph dependency). Its RadCliQ-v1
    coefficient is 4e-12, so the composite does not depend on this choice.
    """
    from nltk.translate.bleu_score import sentence_bleu

    out = []
    for pred, ref in zip(predictions, references, strict=True):
        hyp_toks, ref_toks = _bleu_tokens(pred), _bleu_tokens(ref)
        out.append(
            float(sentence_bleu([ref_toks], hyp_toks, weights=(0.5, 0.5)))
            if hyp_toks and ref_toks
            else 0.0
        )
    return out
