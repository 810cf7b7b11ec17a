"""`--model hf` from the command line on nine architectures: `chexbench check-adapter` passes
every check (the reference forward included) and `chexbench run` writes a valid results file
on phantom data, multiple choice and free text (about 5 s per architecture here).
"""

from __future__ import annotations

import json

import pytest
from helpers.tiny_vlms import ARCHITECTURES, NEED_IMAGE_ONLY_PROCESSOR, write_tiny_vlm

from harness.cli import main
from harness.data import load_data
from harness.phantom import generate_phantom
from harness.results_schema import validate_results

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_cli")
    return {arch: write_tiny_vlm(arch, root / arch) for arch in ARCHITECTURES}


def _args(folder) -> str:
    return f"pretrained={folder},device=cpu,dtype=float32"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_check_adapter_passes_every_check(arch, folders, capsys):
    rc = main(["check-adapter", "hf", "--model-args", _args(folders[arch]), "--items", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "all checks passed" in out
    row = next(line for line in out.splitlines() if "reference forward" in line)
    assert "PASS" in row, out


def test_a_preset_expands_to_hf_and_the_user_folder_wins(folders, capsys):
    """`--model qwen2.5-vl-7b` is `hf` + the hub id + bfloat16; arguments on the line win."""
    rc = main(
        [
            "check-adapter",
            "qwen2.5-vl-7b",
            "--model-args",
            _args(folders["qwen2_5_vl"]),
            "--items",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "all checks passed" in out, out


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_run_on_phantom_data(arch, folders, tmp_path):
    ph = generate_phantom(tmp_path / "phantom", n_per_pair=1, n_text=1, n_fairness=0, image_size=64)
    out = tmp_path / "runs"
    rc = main(
        [
            "run",
            "--model",
            "hf",
            "--model-args",
            _args(folders[arch]),
            "--data",
            str(ph.data_json),
            "--image-root",
            str(ph.out_dir),
            "--output",
            str(out),
            "--text-metrics",
            "rouge",
            "--bootstrap-samples",
            "20",
            "--max-gen-toks",
            "6",
            "--no-progress",
        ]
    )
    assert rc == 0
    (path,) = out.glob("*/results.json")
    results = json.loads(path.read_text())
    assert validate_results(results) == []
    assert results["model"]["adapter"] == "hf"
    info = results["run_card"]["extra"]["model_info"]  # the adapter's own account, in full
    assert info["architecture"] == arch and len(info["chat_template_sha256"]) == 64
    deviations = results["run_card"]["extra"]["generation"]["deviations"]
    assert any("without its video processor" in d for d in deviations) == (
        arch in NEED_IMAGE_ONLY_PROCESSOR
    )
    data = load_data(ph.data_json)
    samples = [json.loads(line) for line in (path.parent / "samples.jsonl").open()]
    scored = [s for s in samples if "logprobs" in s]
    assert len(scored) == len(data.perception)
    assert all(max(s["logprobs"]) < 0 for s in scored)
    assert len(samples) - len(scored) == len(data.text)


def test_refusals_are_one_line(folders, tmp_path, capsys):
    """No chat template: refused unless chat_template=FILE; PaliGemma: refused (its eval-mode
    forward is bidirectional over prompt and option)."""
    import shutil

    import transformers as T

    bare = tmp_path / "no_template"
    shutil.copytree(folders["llava"], bare)
    (bare / "chat_template.jinja").unlink()
    assert main(["check-adapter", "hf", "--model-args", _args(bare), "--items", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no chat template" in err and "chat_template=FILE" in err
    template = tmp_path / "template.jinja"
    shutil.copy(folders["llava"] / "chat_template.jinja", template)
    rc = main(
        [
            "check-adapter",
            "hf",
            "--model-args",
            f"{_args(bare)},chat_template={template}",
            "--items",
            "2",
        ]
    )
    assert rc == 0, capsys.readouterr().out

    pali = tmp_path / "paligemma"
    T.PaliGemmaConfig(
        text_config={"model_type": "gemma", "hidden_size": 32, "num_hidden_layers": 1}
    ).save_pretrained(pali)
    assert main(["check-adapter", "hf", "--model-args", _args(pali)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "paligemma" in err and "bidirectionally" in err


def test_hub_code_needs_the_users_flag(tmp_path, capsys):
    """An architecture whose code lives in its repository is refused without
    --trust-remote-code, in one line, before any of that code is imported."""
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "chexbench_custom_vlm",
                "auto_map": {
                    "AutoConfig": "configuration_custom.CustomConfig",
                    "AutoModelForImageTextToText": "modeling_custom.CustomModel",
                },
            }
        )
    )
    (folder / "configuration_custom.py").write_text("raise SystemExit('hub code ran')\n")
    assert main(["check-adapter", "hf", "--model-args", _args(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust-remote-code" in err
