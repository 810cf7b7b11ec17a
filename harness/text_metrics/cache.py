"""Where scorer checkpoints live, whether they are there, and how to fetch them.

The scorer packages each pick their own download folder and fetch silently on first use,
which hides a missing checkpoint until a run fails (or, for f1chexbert, scores with random
weights). CheXbench keeps them all under one folder and points each package there:

    <root>/chexbert/chexbert.pth          f1chexbert's labeler (StanfordAIMI/RRG_scorers)
    <root>/radgraph/<model_type>/         radgraph's extracted <model_type>.tar.gz (same repo)
    <root>/hf/<hub id>/                   tokenizers/encoders the packages name by hub id
                                          (bert-base-uncased, distilbert-base-uncased, ...)

<root> is $CHEXBENCH_CACHE/scorers, else ~/.cache/chexbench/scorers.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.text_metrics.config import BertScoreConfig, TextMetricsConfig

RRG_REPO = "StanfordAIMI/RRG_scorers"
CHEXBERT_TOKENIZER = "bert-base-uncased"  # hard-coded by f1chexbert
_HF_FILES = [
    "config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "*.safetensors",
]
_CWD_LOCK = threading.Lock()


class ScorerUnavailable(Exception):
    """A scorer's files are missing: the metric is reported unavailable, never as zero."""

    def __init__(self, reason: str, path: Path | str, command: str):
        super().__init__(f"{reason}; {path}; {command}")
        self.reason, self.path, self.command = reason, str(path), command


class ScorerError(UserError):
    """A scorer's files are present but wrong (e.g. checkpoint keys that do not match)."""


def cache_root(configured: Path | None = None) -> Path:
    """Absolute, because scorers are built with the working directory moved (see below)."""
    if configured is not None:
        return Path(configured).expanduser().resolve()
    env = os.environ.get("CHEXBENCH_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "chexbench"
    return (base / "scorers").resolve()


def hf_dir(root: Path) -> Path:
    return root / "hf"


@contextlib.contextmanager
def hub_ids_resolve_to(root: Path) -> Iterator[None]:
    """Run with the working directory at <root>/hf, so a hard-coded hub id resolves there.

    f1chexbert hard-codes `bert-base-uncased` and radgraph reads its encoder's hub id from
    the model's config.json; transformers treats a name that is an existing folder as a
    local model, so this points both packages at our cache without copying or patching.
    """
    target = hf_dir(root)
    target.mkdir(parents=True, exist_ok=True)
    with _CWD_LOCK:
        previous = os.getcwd()
        os.chdir(target)
        try:
            yield
        finally:
            os.chdir(previous)


@dataclass
class ScorerFile:
    scorer: str  # "chexbert", "radgraph", "bertscore", "radcliq"
    what: str
    path: Path
    source: str  # "hub:<repo>[:<file>]"

    @property
    def present(self) -> bool:
        if self.path.is_dir():
            return any(self.path.iterdir())
        return self.path.is_file()

    @property
    def size(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return 0


def fetch_command(scorer: str) -> str:
    return f"chexbench scorers fetch --only {scorer}"


def bertscore_model_dir(root: Path, cfg: BertScoreConfig) -> Path:
    return Path(cfg.model) if Path(cfg.model).is_dir() else hf_dir(root) / cfg.model


def radgraph_encoder_id(model_dir: Path) -> str | None:
    """The encoder hub id named in an extracted radgraph model's config.json."""
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return data["model"]["embedder"]["token_embedders"]["bert"]["model_name"]


def scorer_files(cfg: TextMetricsConfig) -> list[ScorerFile]:
    """Every file the configured metrics need, in the order `scorers status` prints them."""
    root = cache_root(cfg.cache_dir)
    files = [
        ScorerFile(
            "chexbert",
            "CheXbert labeler checkpoint",
            root / "chexbert" / "chexbert.pth",
            f"hub:{RRG_REPO}:chexbert.pth",
        ),
        ScorerFile(
            "chexbert",
            "CheXbert tokenizer/config",
            hf_dir(root) / CHEXBERT_TOKENIZER,
            f"hub:{CHEXBERT_TOKENIZER}",
        ),
    ]
    rg_dir = root / "radgraph" / cfg.radgraph_model_type
    files.append(
        ScorerFile(
            "radgraph",
            f"RadGraph model ({cfg.radgraph_model_type})",
            rg_dir,
            f"hub:{RRG_REPO}:{cfg.radgraph_model_type}.tar.gz",
        )
    )
    encoder = radgraph_encoder_id(rg_dir)
    if encoder is not None and not Path(encoder).is_absolute():
        files.append(
            ScorerFile("radgraph", "RadGraph encoder", hf_dir(root) / encoder, f"hub:{encoder}")
        )
    for name, bs in (("bertscore", cfg.bertscore), ("radcliq", cfg.radcliq_bertscore)):
        files.append(
            ScorerFile(
                name,
                f"BERTScore model ({bs.model})",
                bertscore_model_dir(root, bs),
                f"hub:{bs.model}",
            )
        )
    return files


def require(file: ScorerFile) -> Path:
    if not file.present:
        raise ScorerUnavailable(f"{file.what} missing", file.path, fetch_command(file.scorer))
    return file.path


def fetch(cfg: TextMetricsConfig, only: set[str] | None = None, progress=print) -> list[Path]:
    """Download the missing scorer files from the hub into the cache folder."""
    from huggingface_hub import hf_hub_download, snapshot_download

    root = cache_root(cfg.cache_dir)
    fetched: list[Path] = []

    def _download(file: ScorerFile) -> None:
        spec = file.source.removeprefix("hub:")
        repo, _, filename = spec.partition(":")
        progress(f"fetching {file.what} from {repo} -> {file.path}")
        try:
            if filename.endswith(".tar.gz"):
                archive = hf_hub_download(repo, filename, cache_dir=str(root / "downloads"))
                file.path.mkdir(parents=True, exist_ok=True)
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(file.path, filter="data")
            elif filename:
                file.path.parent.mkdir(parents=True, exist_ok=True)
                hf_hub_download(repo, filename, local_dir=str(file.path.parent))
            else:
                snapshot_download(repo, local_dir=str(file.path), allow_patterns=_HF_FILES)
        except Exception as exc:  # offline, gated, renamed: all need the same instruction
            raise UserError(
                f"could not download {file.what} from the Hugging Face hub ({repo}"
                f"{':' + filename if filename else ''}): {type(exc).__name__}: {exc}. "
                f"Offline? Download it elsewhere and place it at {file.path}"
            ) from exc
        fetched.append(file.path)

    for file in scorer_files(cfg):
        if (only is None or file.scorer in only) and not file.present:
            _download(file)
    # The radgraph encoder's hub id is only known once the model folder exists.
    for file in scorer_files(cfg):
        if (only is None or file.scorer in only) and not file.present:
            _download(file)
    return fetched
