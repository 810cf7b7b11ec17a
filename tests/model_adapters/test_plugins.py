"""A third party adds a model without touching the harness, both ways the README documents:
`--adapter-file` (the README's own example adapter, run end to end) and an entry point in the
`chexbench.adapters` group of an installed package (a real `*.dist-info` that
`importlib.metadata` discovers, the way pip leaves it in site-packages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.tiny_vlms import write_tiny_vlm

from harness.cli import main
from harness.data import load_data
from harness.phantom import generate_phantom
from harness.results_schema import validate_results
from model_adapters import registry
from model_adapters.engine import CheXbenchLM

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "adapters" / "example_adapter.py"


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Adapters registered by one test (file or plug-in) must not leak into the next."""
    monkeypatch.setattr(registry, "_LOADED", {})
    monkeypatch.setattr(registry, "_FROM_FILES", {})


@pytest.fixture(scope="module")
def llava_args(tmp_path_factory):
    """A tiny LLaVA-1.5 repository (LlavaForConditionalGeneration, its processor and chat
    template) with a byte-level tokenizer: every option spans several tokens."""
    folder = write_tiny_vlm("llava", tmp_path_factory.mktemp("llava"), byte_level=True)
    return f"pretrained={folder},device=cpu,dtype=float32"


def test_readme_embeds_the_example_adapter_verbatim():
    readme = (ROOT / "docs" / "adapters" / "README.md").read_text()
    code = EXAMPLE.read_text()
    assert code.strip() in readme
    assert len(code.splitlines()) <= 75  # README: "about 70 lines"


# ----- --adapter-file ----------------------------------------------------------------------
def test_adapter_file_runs_end_to_end(tmp_path, llava_args):
    ph = generate_phantom(tmp_path / "phantom", n_per_pair=1, n_text=1, n_fairness=0, image_size=64)
    out = tmp_path / "runs"
    rc = main(
        [
            "run",
            "--model",
            "my_llava",
            "--adapter-file",
            str(EXAMPLE),
            "--model-args",
            llava_args,
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
            "8",
        ]
    )
    assert rc == 0
    (path,) = out.glob("*/results.json")
    results = json.loads(path.read_text())
    assert validate_results(results) == []
    assert results["model"]["adapter"] == "my_llava"
    assert results["model"]["name"] == "LLaVA-1.5 (example)"
    samples = [json.loads(line) for line in (path.parent / "samples.jsonl").open()]
    data = load_data(ph.data_json)
    scored = [s for s in samples if "logprobs" in s]
    assert len(scored) == len(data.perception)  # every perception item, none dropped
    assert all(len(s["logprobs"]) == len(s["options"]) and max(s["logprobs"]) < 0 for s in scored)
    assert len(samples) - len(scored) == len(data.text)  # the reports were generated


def test_adapter_file_passes_check_adapter(llava_args, capsys):
    rc = main(
        [
            "check-adapter",
            "my_llava",
            "--adapter-file",
            str(EXAMPLE),
            "--model-args",
            llava_args,
            "--items",
            "2",
        ]
    )
    assert rc == 0, capsys.readouterr().out
    assert "all checks passed" in capsys.readouterr().out


def test_adapter_file_errors_are_clear(tmp_path, capsys):
    assert main(["adapters", "--adapter-file", str(tmp_path / "absent.py")]) == 2
    assert "absent.py: no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    assert main(["adapters", "--adapter-file", str(empty)]) == 2
    assert "defines no" in capsys.readouterr().err
    impostor = tmp_path / "impostor.py"  # a user file cannot report results as a built-in
    impostor.write_text(EXAMPLE.read_text().replace('name = "my_llava"', 'name = "chexagent"'))
    assert main(["adapters", "--adapter-file", str(impostor)]) == 2
    assert "'chexagent', which is a built-in adapter" in capsys.readouterr().err
    assert main(["check-adapter", "nonexistent"]) == 2
    assert "--adapter-file" in capsys.readouterr().err


def test_adapters_command_lists_the_file_and_its_path(capsys):
    assert main(["adapters", "--json", "--adapter-file", str(EXAMPLE)]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)["adapters"]}
    assert listed["my_llava"]["kind"] == "file"
    assert listed["my_llava"]["target"] == str(EXAMPLE)
    assert listed["chexagent"] == {
        "name": "chexagent",
        "kind": "built-in",
        "target": "model_adapters.chexagent:CheXagentAdapter",
        "distribution": "",
        "note": "",
    }


# ----- entry point of an installed package -------------------------------------------------
def install_plugin(site: Path) -> None:
    """What `pip install acme-chexbench` leaves behind: the module and its dist-info."""
    code = EXAMPLE.read_text()
    assert 'name = "my_llava"' in code
    (site / "acme_chexbench.py").write_text(
        code.replace('name = "my_llava"', 'name = "acme_llava"')
    )
    info = site / "acme_chexbench-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-chexbench\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[chexbench.adapters]\n"
        "acme_llava = acme_chexbench:MyLlavaAdapter\n"
        "chexagent = acme_chexbench:MyLlavaAdapter\n"  # tries to shadow a built-in
    )


def test_entry_point_is_discovered_listed_and_built(tmp_path, monkeypatch, llava_args, capsys):
    install_plugin(tmp_path)
    assert "acme_llava" not in registry.available()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_chexbench", raising=False)

    assert main(["adapters", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    acme = next(s for s in listed["adapters"] if s["name"] == "acme_llava")
    assert acme == {
        "name": "acme_llava",
        "kind": "entry point",
        "target": "acme_chexbench:MyLlavaAdapter",
        "distribution": "acme-chexbench",
        "note": "",
    }
    shadow = [
        s for s in listed["adapters"] if s["name"] == "chexagent" and s["kind"] == "entry point"
    ]
    assert shadow and "ignored" in shadow[0]["note"]
    assert registry.get_adapter_class("chexagent").__module__ == "model_adapters.chexagent"

    model_args = dict(kv.split("=") for kv in llava_args.split(","))
    lm = registry.build_lm("acme_llava", model_args, batch_size=2, show_progress=False)
    assert isinstance(lm, CheXbenchLM)
    assert type(lm.adapter).__module__ == "acme_chexbench"
    assert Path(sys.modules["acme_chexbench"].__file__).parent == tmp_path
    from PIL import Image

    img = Image.new("RGB", (40, 52), (200, 40, 90))
    reqs = [("Which view?", f" {o}", {"visual": [img]}) for o in ("PA", "AP")]
    for (ctx, cont, extra), s in zip(reqs, lm.loglikelihood(reqs), strict=True):
        assert s[0] == pytest.approx(lm.score_naive(ctx, cont, extra["visual"])[0], abs=1e-4)


def test_entry_point_listed_by_a_fresh_chexbench_process(tmp_path):
    install_plugin(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "adapters"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "acme_llava" in line)
    assert "entry point (acme-chexbench)" in row and "acme_chexbench:MyLlavaAdapter" in row
