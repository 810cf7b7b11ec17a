"""Every default that more than one command or module shares, defined once.

Imported by argument parsers, so it must stay free of heavy imports (`chexbench --help` loads
it and nothing from torch, scipy, transformers, lm-eval or pandas).
"""

SEED = 1234  # bootstrap, permutation and analysis seed (recorded in every results file)
BOOTSTRAP_SAMPLES = 1000  # resamples per confidence interval
PERMUTATIONS = 10_000
BATCH_SIZE = 8  # items per forward batch
# Batches whose images are decoded while the current batch runs (model_adapters.prefetch);
# 0 decodes each batch's images when it is scored. Changes speed only, never a score.
PREFETCH_BATCHES = 2
RUNS_DIR = "results/runs"
# Largest image (width x height) decoded; larger files are refused before their pixels are
# read (a 20000 x 20000 PNG needs 1.2 GB as RGB). Pillow's own decompression-bomb threshold;
# chest films are at most ~4300 x 4300 (18.5 Mpx). `--max-image-pixels` changes it.
MAX_IMAGE_PIXELS = 89_478_485
DEMO_DIR = "results/demo"

# Text metric families and BERTScore presets by name (their configurations live in
# harness.text_metrics.config, which checks that it defines exactly these).
TEXT_METRIC_FAMILIES = ("rougeL", "bertscore", "chexbert", "radgraph", "radcliq")
BERTSCORE_PRESET_NAMES = ("radeval", "bertscore-default", "radcliq")
BERTSCORE_PRESET = "radeval"
