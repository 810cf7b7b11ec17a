"""`chexbench judge`: pairwise LLM judging of generated reports (paper Figures 3 and 8)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.commands import args as common
from harness.errors import UserError
from harness.taxonomy import TEXT_TASK_NAMES, resolve_task

DEFAULT_JUDGE_MODEL = "gpt-4-0613"  # the paper's judge (Figure 8)

DESCRIPTION = """\
Judge generated reports pairwise with an OpenAI-compatible chat model, using the paper's
Figure 8 prompt. Every item is judged in both orders (A/B swapped); when the orders disagree
the verdict is a tie. Writes <out>.json (results schema, kind "judge"), <out>.samples.jsonl
(every verdict and response), <out>.ledger.jsonl (tokens per call) and <out>.png (Figure 3
style bars). The API key is read only from the environment (--api-key-env, default
OPENAI_API_KEY). Judgments are cached: a rerun makes no calls and an interrupted run resumes.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        metavar="SAMPLES_JSONL",
        help="two or more <run>.samples.jsonl; the first is compared with each other",
    )
    src.add_argument(
        "--run",
        type=Path,
        metavar="SAMPLES_JSONL",
        help="one run, judged against the references (needs --against-reference)",
    )
    p.add_argument(
        "--against-reference",
        action="store_true",
        help="side B is the human-written reference of each item",
    )
    p.add_argument("--task", required=True, help="findings_generation or findings_summarization")
    p.add_argument(
        "--names",
        nargs="+",
        help="display names for the runs, in order "
        "(default: model.name of the results JSON beside each file, else its stem)",
    )
    p.add_argument(
        "--judge-model",
        default=DEFAULT_JUDGE_MODEL,
        help="the judging LLM's model name (default %(default)s)",
    )
    p.add_argument(
        "--model", action=common.DeprecatedAlias, new="--judge-model", dest="judge_model"
    )
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
        "(default: the openai client's, i.e. $OPENAI_BASE_URL or api.openai.com)",
    )
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default %(default)s)",
    )
    p.add_argument(
        "--api-seed",
        type=common.seed_int,
        default=0,
        help="seed sent with every request to the judge server (default %(default)s)",
    )
    p.add_argument(
        "--max-tokens", type=common.positive_int, default=1024, help="judge answer limit"
    )
    p.add_argument(
        "--concurrency", type=common.positive_int, default=16, help="requests in flight at most"
    )
    p.add_argument(
        "--timeout",
        type=common.positive_float,
        default=120.0,
        help="total seconds one request attempt may take, from connecting to the "
        "answer's last byte (default %(default)s)",
    )
    p.add_argument(
        "--max-attempts", type=common.positive_int, default=6, help="attempts per judgment"
    )
    p.add_argument(
        "--backoff-base",
        type=common.non_negative_float,
        default=1.0,
        help="first retry delay in seconds; doubles per failure",
    )
    p.add_argument(
        "--backoff-max", type=common.non_negative_float, default=60.0, help="cap on one retry delay"
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="cache folder (default $CHEXBENCH_JUDGE_CACHE or ~/.cache/chexbench/judge)",
    )
    p.add_argument(
        "--template",
        type=Path,
        help="a prompt template with [reference], [report1] "
        "and [report2] (default: Figure 8 of the paper)",
    )
    common.add_output(p, None, "results JSON path (default results/judge/<run_id>.json)", type=Path)
    p.add_argument(
        "--max-items",
        type=common.positive_int,
        help="judge a seeded random subset of this many items (the paper judged 152)",
    )
    p.add_argument(
        "--subset-seed",
        type=common.seed_int,
        default=0,
        help="seed of the --max-items subset (default %(default)s)",
    )
    p.add_argument(
        "--sample-seed",
        action=common.DeprecatedAlias,
        new="--subset-seed",
        dest="subset_seed",
        type=common.seed_int,
    )
    common.add_bootstrap(p)
    common.add_seed(p)
    p.add_argument("--price-in", type=common.non_negative_float, help="USD per 1M input tokens")
    p.add_argument("--price-out", type=common.non_negative_float, help="USD per 1M output tokens")
    p.add_argument(
        "--est-output-tokens",
        type=common.positive_int,
        default=300,
        help="answer length assumed by --dry-run (default %(default)s)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of calls and the estimated cost; call nothing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every retry")


def register(sub) -> None:
    p = sub.add_parser(
        "judge",
        help="pairwise LLM judging of generated reports (Figure 8)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.judge.pipeline import JudgeConfig, run_judge
    from harness.openai_compat.client import RetryPolicy
    from harness.openai_compat.secrets import mask_logging

    task = resolve_task(args.task)
    if task is None or task.slug not in TEXT_TASK_NAMES:
        raise UserError(
            f"--task {args.task!r} is not a text task; choose one of {sorted(TEXT_TASK_NAMES)}"
        )
    if args.run is not None and not args.against_reference:
        raise UserError(
            "--run judges one run against the references: add --against-reference "
            "(or compare two runs with --runs A B)"
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    mask_logging()  # a server may echo the key: no log line from any library prints it
    level = logging.INFO if args.verbose else logging.WARNING
    for name in ("chexbench.judge", "chexbench.openai_compat"):
        logging.getLogger(name).setLevel(level)
    cfg = JudgeConfig(
        runs=[args.run] if args.run is not None else list(args.runs),
        task=task.slug,
        against_reference=args.against_reference,
        names=args.names,
        judge_model=args.judge_model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        seed=args.api_seed,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        policy=RetryPolicy(
            max_attempts=args.max_attempts,
            base_delay_s=args.backoff_base,
            max_delay_s=args.backoff_max,
            timeout_s=args.timeout,
        ),
        cache_dir=args.cache,
        template=args.template,
        output=args.output,
        max_items=args.max_items,
        sample_seed=args.subset_seed,
        bootstrap_b=args.bootstrap_samples,
        bootstrap_seed=args.seed,
        price_in=args.price_in,
        price_out=args.price_out,
        est_output_tokens=args.est_output_tokens,
        dry_run=args.dry_run,
        progress=not args.no_progress,
        command=list(sys.argv),  # the key is never on the command line
    )
    return run_judge(cfg)
