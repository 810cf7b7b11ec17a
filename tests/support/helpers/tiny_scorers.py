"""Builds a scorer cache of tiny models the real packages load through their own code.

Layout mirrors the real cache (harness/text_metrics/cache.py). The CheXbert labeler is a
hand-set 1-layer BERT that reads two keywords as bags of words: "effusion" -> Pleural
Effusion, "cardiomegaly" -> Cardiomegaly, and a "no" anywhere in the report cancels both.
That makes "a negated finding lowers F1" checkable through f1chexbert's own labeling.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

WORDS = [
    "no",
    "effusion",
    "cardiomegaly",
    "small",
    "left",
    "right",
    "pleural",
    "heart",
    "is",
    "normal",
    "lungs",
    "are",
    "clear",
    "the",
    "there",
    "mild",
    "edema",
    "and",
    "size",
    "pneumothorax",
    "of",
    "stable",
    "large",
    "with",
    "a",
    "tube",
    ".",
    ",",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + WORDS


def _write_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)


def _bert_config(hidden: int, layers: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=1,
        intermediate_size=hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def build_tiny_encoder(folder: Path, layers: int = 5, hidden: int = 16) -> None:
    """A random (seeded) tiny BERT with tokenizer: stands in for BERTScore/RadGraph encoders."""
    from transformers import BertModel

    torch.manual_seed(0)
    _write_tokenizer(folder)
    BertModel(_bert_config(hidden, layers)).save_pretrained(folder)


def build_keyword_chexbert(root: Path) -> Path:
    """hf/bert-base-uncased (tiny config + tokenizer) and chexbert/chexbert.pth."""
    from f1chexbert.f1chexbert import bert_labeler

    from harness.text_metrics.cache import hub_ids_resolve_to

    tok_dir = root / "hf" / "bert-base-uncased"
    _write_tokenizer(tok_dir)
    _bert_config(hidden=8, layers=1).save_pretrained(tok_dir)
    with hub_ids_resolve_to(root):
        model = bert_labeler(inference=True)
    ids = {w: VOCAB.index(w) for w in ("effusion", "cardiomegaly", "no")}
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.0)
        emb = model.bert.embeddings.word_embeddings.weight
        emb[ids["effusion"], 0] = emb[ids["cardiomegaly"], 1] = emb[ids["no"], 2] = 5.0
        layer = model.bert.encoder.layer[0]
        # Q = K = 0: uniform attention, so [CLS] ends up with the mean of the token vectors.
        layer.attention.self.value.weight.copy_(torch.eye(8))
        layer.attention.output.dense.weight.copy_(torch.eye(8))
        for head, dim in ((9, 0), (1, 1)):  # Pleural Effusion, Cardiomegaly
            model.linear_heads[head].weight[1, dim] = 4.0
            model.linear_heads[head].weight[1, 2] = -8.0
            model.linear_heads[head].bias[1] = -3.0
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.bert.embeddings.position_ids"] = torch.arange(128)[None]
    path = root / "chexbert" / "chexbert.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": state, "epoch": 1}, path)
    return path


RADGRAPH_CONFIG = {
    "dataset_reader": {
        "token_indexers": {"bert": {"model_name": "distilbert-base-uncased", "max_length": 128}},
        "max_span_width": 3,
    },
    "model": {
        "type": "dygie",
        "embedder": {
            "token_embedders": {
                "bert": {"model_name": "distilbert-base-uncased", "max_length": 128}
            }
        },
        "initializer": {},
        "module_initializer": {},
        "feature_size": 4,
        "max_span_width": 3,
        "target_task": "relation",
        "feedforward_params": {"num_layers": 1, "hidden_dims": 8, "dropout": 0.0},
        "loss_weights": {"ner": 0.2, "relation": 1.0, "coref": 0.0, "events": 0.0},
        "modules": {
            "coref": {"spans_per_word": 0.3, "max_antecedents": 10, "coref_prop": 0},
            "ner": {},
            "relation": {"spans_per_word": 0.5},
            "events": {
                "trigger_spans_per_word": 0.3,
                "argument_spans_per_word": 0.8,
                "loss_weights": {"trigger": 0.2, "arguments": 1.0},
            },
        },
    },
}


def build_tiny_radgraph(root: Path) -> Path:
    """radgraph/radgraph/{config.json, vocabulary/, weights.th} on the tiny encoder."""
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie

    from harness.text_metrics.cache import hub_ids_resolve_to

    model_dir = root / "radgraph" / "radgraph"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(RADGRAPH_CONFIG))
    vocab = Vocabulary()
    for label in ["", "ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA"]:
        vocab.add_token_to_namespace(label, "radgraph__ner_labels")
    for label in ["modify", "located_at", "suggestive_of"]:
        vocab.add_token_to_namespace(label, "radgraph__relation_labels")
    vocab.save_to_files(str(model_dir / "vocabulary"))
    torch.manual_seed(0)
    with hub_ids_resolve_to(root):
        embedder = text_field_embedders.BasicTextFieldEmbedder(
            {
                "bert": (
                    token_embedders.PretrainedTransformerMismatchedEmbedder(
                        model_name="distilbert-base-uncased", max_length=128
                    )
                )
            }
        )
        kwargs = {
            k: v
            for k, v in json.loads(json.dumps(RADGRAPH_CONFIG["model"])).items()
            if k not in ("type", "embedder", "initializer", "module_initializer")
        }
        model = dygie.DyGIE(vocab=vocab, embedder=embedder, **kwargs)
    with torch.no_grad():  # every span an OBS-DP entity, so reports always have entities
        model._ner._ner_scorers["radgraph__ner_labels"][1]._module.bias.copy_(
            torch.tensor([-5.0, 5.0, -5.0, -5.0])
        )
    torch.save(model.state_dict(), model_dir / "weights.th")
    return model_dir


def build_scorer_cache(root: Path, with_radgraph: bool = True) -> Path:
    build_tiny_encoder(root / "hf" / "distilbert-base-uncased")
    shutil.copytree(root / "hf" / "distilbert-base-uncased", root / "hf" / "distilroberta-base")
    build_keyword_chexbert(root)
    if with_radgraph:
        build_tiny_radgraph(root)
    return root


_SHARED: dict[str, Path] = {}


def shared_scorer_cache(tmp_path_factory) -> Path:
    """One tiny cache per test session (building it costs seconds); treat it as read-only."""
    if "root" not in _SHARED:
        _SHARED["root"] = build_scorer_cache(tmp_path_factory.mktemp("scorers"))
    return _SHARED["root"]
