"""`chexbench run --config run.yaml`: a YAML value meets the checks its command-line option
meets (type, range, choices), and a bad one is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("batch_size", "0", "must be at least 1"),
        ("limit", "-3", "must be at least 1"),
        ("mc_mode", "banana", "is not one of loglikelihood, generate"),
        ("num_processes", "0", "must be at least 1"),
        ("seed", "-1", "must be 0 or more"),
        ("skip_missing", "maybe", "expected true or false"),
    ],
)
def test_bad_yaml_value_is_one_line_exit_2_and_writes_nothing(key, value, needle, tmp_path, capsys):
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: chexagent\nmodel_args: {{pretrained: smoke}}\ndata: {tmp_path / 'data.json'}\n"
        f"output: {out}\n{key}: {value}\n"
    )
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: --config {config}: {key}: ") and needle in err
    assert not out.exists()


def test_yaml_values_are_converted_like_the_command_line(tmp_path):
    from harness.cli import OneLineParser
    from harness.commands.run import add_arguments, resolve_config

    config = tmp_path / "run.yaml"
    config.write_text(
        "model: chexagent\ntasks: [a, b]\nlimit: '7'\nseed: 3\nskip_missing: true\n"
        "adapter_file: x.py\nmax_gen_toks:\n"
    )
    p = OneLineParser(prog="chexbench run")
    add_arguments(p)
    args = resolve_config(p, ["--config", str(config), "--seed", "9"])
    assert (args.model, args.tasks, args.limit, args.skip_missing) == ("chexagent", "a,b", 7, True)
    assert args.adapter_file == ["x.py"] and args.max_gen_toks is None
    assert args.seed == 9  # the command line wins


@pytest.mark.parametrize(
    "grant",
    [
        "trust_remote_code: true\nmodel_args: {pretrained: smoke}",
        "model_args: {pretrained: smoke, trust_remote_code: true}",
        "model_args: pretrained=smoke,trust_remote_code=true",
    ],
)
def test_a_config_file_cannot_grant_remote_code(grant, tmp_path, capsys):
    """Running a model's hub code is decided on the command line only; with the flag there, the
    same file is read (and fails later, on its missing data file, not on the grant)."""
    config = tmp_path / "run.yaml"
    config.write_text(f"model: chexagent\n{grant}\ndata: {tmp_path / 'data.json'}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a config file cannot grant that" in err
    assert not out.exists()
    argv = ["run", "--config", str(config), "--output", str(out), "--trust-remote-code"]
    assert main(argv) == 2
    assert "cannot grant" not in capsys.readouterr().err
