"""Every default that more than one command or module shares, defined once.

Imported by argument parsers, so it must stay free of heavy imports (`chexbench --help` loads
it and nothing from torch, scipy, transformers, lm-eval or pandas).
"""

SEED = 1234  # bootstrap, permutation and analysis seed (recorded in every results file)
BOOTSTRAP_SAMPLES = 1000  # resamples per confidence interval
PERMUTATIONS = 10_000
BATCH_SIZE = 8  # items per forward batch
RUNS_DIR = "results/runs"
DEMO_DIR = "results/demo"

# Text metric families and BERTScore presets by name (their configurations live in
# harness.text_metrics.config, which checks that it defines exactly these).
TEXT_METRIC_FAMILIES = ("rougeL", "bertscore", "chexbert", "radgraph", "radcliq")
BERTSCORE_PRESET_NAMES = ("radeval", "bertscore-default", "radcliq")
BERTSCORE_PRESET = "radeval"
