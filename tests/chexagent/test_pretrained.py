"""Starting CheXagent from pretrained parts (chexagent/pretrained.py), on tiny checkpoints of the
real layouts written with save_pretrained: BERT -> Q-Former as BLIP-2 did, a BLIP-2 / bare ViT
at a smaller image size (position embeddings resized), a Mistral + tokenizer gaining <image>."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2VisionConfig,
    Blip2VisionModel,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
)

from chexagent.cli import main
from chexagent.forward import lm_logits
from chexagent.instruct.schema import Instance
from chexagent.instruct.store import write_store
from chexagent.modeling import ARCHS, build_model, load_bundle, save_bundle
from chexagent.pretrained import (
    PretrainedInitError,
    init_from_pretrained,
    init_text_embeddings,
    interpolate_position_embedding,
)
from chexagent.prompting import build_inputs
from chexagent.tokenizer import IMAGE_TOKEN, load_tokenizer
from chexagent.training.parts import Stage1Heads

TINY = ARCHS["tiny"]
BERT_VOCAB = 120


pytestmark = pytest.mark.usefixtures("single_thread")


def _spread(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights unlike any fresh init (LayerNorms included), so a copy is told from a default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + 0.05)
    return model.eval()


def _edit_weights(folder: Path, out: Path, edit) -> Path:
    """A copy of a checkpoint folder whose single safetensors file went through `edit`."""
    shutil.copytree(folder, out)
    state = load_file(out / "model.safetensors")
    edit(state)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    return out


# ----- sources -----------------------------------------------------------------------------
def _bert_config(**sizes) -> BertConfig:
    base = {
        "hidden_size": TINY.qformer_hidden,
        "num_hidden_layers": TINY.qformer_layers,
        "num_attention_heads": TINY.qformer_heads,
        "intermediate_size": TINY.qformer_intermediate,
    }
    return BertConfig(vocab_size=BERT_VOCAB, **{**base, **sizes})


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """bert-base-uncased's layout, tiny: BertForMaskedLM (`bert.` prefix, an MLM head)."""
    path = tmp_path_factory.mktemp("bert") / "bert"
    torch.manual_seed(0)
    _spread(BertForMaskedLM(_bert_config()), seed=1).save_pretrained(path)
    return path


def _vision_config(image_size: int, **sizes) -> Blip2VisionConfig:
    base = {
        "hidden_size": TINY.vision_hidden,
        "num_hidden_layers": TINY.vision_layers,
        "num_attention_heads": TINY.vision_heads,
        "intermediate_size": TINY.vision_intermediate,
        "patch_size": TINY.patch_size,
    }
    return Blip2VisionConfig(image_size=image_size, **{**base, **sizes})


def _write_vision(path: Path, image_size: int, seed: int = 2, **sizes) -> Path:
    torch.manual_seed(0)
    _spread(Blip2VisionModel(_vision_config(image_size, **sizes)), seed).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory) -> Path:
    """A whole BLIP-2 checkpoint (vision + Q-Former + LM) whose ViT runs at 32 px, not 64."""
    path = tmp_path_factory.mktemp("blip2") / "blip2"
    text = MistralConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config = Blip2Config(
        vision_config=_vision_config(32).to_dict(),
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        text_config=text.to_dict(),
        num_query_tokens=4,
    )
    torch.manual_seed(0)
    _spread(Blip2ForConditionalGeneration(config), seed=3).save_pretrained(path)
    return path


def _mistral_tokenizer() -> PreTrainedTokenizerFast:
    """Mistral's special-token set (<unk>, <s>, </s>; no pad, no <image>), byte-level BPE."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        ["USER: Is there a pleural effusion? ASSISTANT: No", "the lungs are clear, no pneumothorax"]
        * 5,
        trainer=trainer,
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _write_lm(path: Path, tok: PreTrainedTokenizerFast, **sizes) -> Path:
    base = {
        "hidden_size": TINY.text_hidden,
        "intermediate_size": TINY.text_intermediate,
        "num_hidden_layers": TINY.text_layers,
        "num_attention_heads": TINY.text_heads,
        "num_key_value_heads": TINY.text_kv_heads,
    }
    config = MistralConfig(
        vocab_size=len(tok),
        rope_theta=1e6,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
        **{**base, **sizes},
    )
    torch.manual_seed(0)
    _spread(MistralForCausalLM(config), seed=4).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return _write_lm(tmp_path_factory.mktemp("lm") / "mistral", _mistral_tokenizer())


# ----- Q-Former ------------------------------------------------------------------------------
FFN_FROM_BERT = {
    "intermediate_query": "intermediate",
    "output_query": "output",
    "intermediate": "intermediate",
    "output": "output",
}


@pytest.mark.parametrize("text_input", [True, False])
def test_qformer_takes_bert_as_blip2_did(bert_dir, text_input):
    bundle = build_model("tiny", seed=0, qformer_text_input=text_input)
    qformer = bundle.model.qformer
    cross_before = {k: v.clone() for k, v in qformer.state_dict().items() if "crossattention" in k}
    report = init_from_pretrained(bundle, qformer=str(bert_dir))
    bert = BertModel.from_pretrained(bert_dir).state_dict()  # transformers' own reading
    ours = qformer.state_dict()

    pairs = {f"layernorm.{p}": f"embeddings.LayerNorm.{p}" for p in ("weight", "bias")}
    for i in range(TINY.qformer_layers):
        head = f"encoder.layer.{i}."
        for k in bert:
            if k.startswith(head + "attention.self."):
                pairs[k.replace("attention.self.", "attention.attention.")] = k
            elif k.startswith(head + "attention.output."):
                pairs[k] = k
        for mine, theirs in FFN_FROM_BERT.items():
            if mine in ("intermediate", "output") and not text_input:
                assert not any(k.startswith(f"encoder.layer.{i}.{mine}.") for k in ours)
                continue
            for k in bert:
                if k.startswith(f"encoder.layer.{i}.{theirs}."):
                    pairs[k.replace(f".{theirs}.", f".{mine}.", 1)] = k
    assert len(pairs) == report["qformer"]["tensors"]
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], bert[theirs]), mine

    # cross-attention: exactly as initialised, and equal to no tensor of the BERT checkpoint
    assert cross_before and all(torch.equal(ours[k], v) for k, v in cross_before.items())
    released = load_file(bert_dir / "model.safetensors").values()
    for k, v in cross_before.items():
        assert not any(b.shape == v.shape and torch.equal(b, v) for b in released), k
    assert set(ours) == set(pairs) | set(cross_before)
    # the queries keep build_model's BLIP-2 init: distinct (transformers' zeros would be equal)
    queries = bundle.model.query_tokens.detach()[0]
    assert 0.01 < float(queries.std()) < 0.03 and not torch.equal(queries[0], queries[1])

    assert report["qformer"]["new"][0] == "qformer.encoder.layer.0.crossattention"
    dropped = report["qformer"]["dropped"]
    assert "cls.predictions.bias" in dropped and "embeddings.word_embeddings.weight" in dropped
    assert report["random_init"] == ["vision_model", "language_model", "language_projection"]
    json.dumps(report)  # the CLI prints it


def test_qformer_reads_tf_era_layernorm_names(bert_dir, tmp_path):
    """bert-base-uncased stores LayerNorm.gamma / .beta; they map like weight / bias."""

    def legacy(state):
        for k in [k for k in state if "LayerNorm" in k]:
            state[k.replace(".weight", ".gamma").replace(".bias", ".beta")] = state.pop(k)

    folder = _edit_weights(bert_dir, tmp_path / "legacy", legacy)
    assert any(k.endswith("LayerNorm.gamma") for k in load_file(folder / "model.safetensors"))
    bundle = build_model("tiny", seed=0)
    init_from_pretrained(bundle, qformer=str(folder))
    bert = BertModel.from_pretrained(bert_dir).state_dict()
    ours = bundle.model.qformer.state_dict()
    assert torch.equal(ours["layernorm.weight"], bert["embeddings.LayerNorm.weight"])
    assert torch.equal(
        ours["encoder.layer.1.output_query.LayerNorm.bias"],
        bert["encoder.layer.1.output.LayerNorm.bias"],
    )


def test_qformer_refuses_unexpected_missing_and_misfit(bert_dir, tmp_path):
    extra = _edit_weights(
        bert_dir,
        tmp_path / "extra",
        lambda s: s.update({"bert.encoder.layer.0.attention.self.mystery.weight": torch.zeros(2)}),
    )
    with pytest.raises(PretrainedInitError, match=r"unexpected.*attention\.self\.mystery"):
        init_from_pretrained(build_model("tiny", seed=0), qformer=str(extra))

    gone = _edit_weights(
        bert_dir, tmp_path / "gone", lambda s: s.pop("bert.encoder.layer.1.output.dense.bias")
    )
    with pytest.raises(PretrainedInitError, match=r"missing.*encoder\.layer\.1\.output\.dense"):
        init_from_pretrained(build_model("tiny", seed=0), qformer=str(gone))

    narrow = tmp_path / "narrow"
    BertModel(_bert_config(hidden_size=32)).save_pretrained(narrow)
    with pytest.raises(ValueError, match=r"sizes \(hidden 32.*model's \(hidden 64"):
        init_from_pretrained(build_model("tiny", seed=0), qformer=str(narrow))


def test_text_embeddings_take_bert_word_and_position_embeddings(bert_dir):
    bundle = build_model("tiny", seed=0, qformer_text_input=True)
    heads = Stage1Heads(bundle.model, text_vocab=BERT_VOCAB)
    assert init_text_embeddings(heads.embeddings, str(bert_dir))["tensors"] == 2
    bert = BertModel.from_pretrained(bert_dir).state_dict()
    assert torch.equal(
        heads.embeddings.word_embeddings.weight, bert["embeddings.word_embeddings.weight"]
    )
    assert torch.equal(
        heads.embeddings.position_embeddings.weight, bert["embeddings.position_embeddings.weight"]
    )
    other_vocab = Stage1Heads(bundle.model, text_vocab=BERT_VOCAB - 20)
    with pytest.raises(PretrainedInitError, match=r"\(120, 64\) vs the model's \(100, 64\)"):
        init_text_embeddings(other_vocab.embeddings, str(bert_dir))


# ----- vision ----------------------------------------------------------------------------------
def test_vision_from_blip2_checkpoint_resizes_positions(blip2_dir):
    bundle = build_model("tiny", seed=0)
    report = init_from_pretrained(bundle, vision=str(blip2_dir))
    assert report["vision_model"]["position_embedding"].startswith("4x4 -> 8x8")
    source = Blip2ForConditionalGeneration.from_pretrained(blip2_dir).vision_model.eval()
    theirs, ours = source.state_dict(), bundle.model.vision_model.state_dict()
    assert set(theirs) == set(ours)
    pos = "embeddings.position_embedding"
    for k in ours:
        if k != pos:
            assert torch.equal(ours[k], theirs[k]), k
    assert ours[pos].shape == (1, 1 + 64, TINY.vision_hidden)
    assert torch.equal(ours[pos][:, 0], theirs[pos][:, 0])  # the class token is kept
    # what transformers computes on the fly for a 64 px image, and the same tower output
    dummy = torch.zeros(1, 1 + 64, TINY.vision_hidden)
    assert torch.allclose(
        ours[pos], source.embeddings.interpolate_pos_encoding(dummy, 64, 64), atol=1e-6
    )
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        got = bundle.model.vision_model(pixel_values=pixels).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_vision_bare_tower_at_same_size_is_copied_exactly(tmp_path):
    folder = _write_vision(tmp_path / "vit", image_size=TINY.image_size)
    bundle = build_model("tiny", seed=0)
    report = init_from_pretrained(bundle, vision=str(folder))
    assert report["vision_model"]["position_embedding"] == "copied (8x8 patch grid)"
    theirs = Blip2VisionModel.from_pretrained(folder).state_dict()
    ours = bundle.model.vision_model.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_interpolation_keeps_a_constant_grid_constant():
    pos = torch.cat([torch.full((1, 1, 8), -3.0), torch.full((1, 16, 8), 0.5)], dim=1)
    out = interpolate_position_embedding(pos, 64)
    assert out.shape == (1, 65, 8) and out[0, 0].eq(-3.0).all()
    assert torch.allclose(out[0, 1:], torch.full((64, 8), 0.5), atol=1e-6)
    assert interpolate_position_embedding(pos, 16) is pos
    with pytest.raises(PretrainedInitError, match="square"):
        interpolate_position_embedding(pos, 60)


def test_vision_refuses_misfit_unexpected_and_wrong_kind(blip2_dir, bert_dir, tmp_path):
    deeper = _write_vision(tmp_path / "deeper", image_size=32, num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"layers 3.*model's \(hidden 64, layers 2"):
        init_from_pretrained(build_model("tiny", seed=0), vision=str(deeper))
    extra = _edit_weights(
        blip2_dir,
        tmp_path / "extra",
        lambda s: s.update({"vision_model.encoder.layers.0.mystery": torch.zeros(2)}),
    )
    with pytest.raises(
        PretrainedInitError, match=r"unexpected.*vision_model\.encoder\.layers\.0\.mystery"
    ):
        init_from_pretrained(build_model("tiny", seed=0), vision=str(extra))
    gone = _edit_weights(
        blip2_dir, tmp_path / "gone", lambda s: s.pop("vision_model.post_layernorm.bias")
    )
    with pytest.raises(PretrainedInitError, match=r"missing.*vision_model\.post_layernorm\.bias"):
        init_from_pretrained(build_model("tiny", seed=0), vision=str(gone))
    with pytest.raises(PretrainedInitError, match="model_type 'bert'"):
        init_from_pretrained(build_model("tiny", seed=0), vision=str(bert_dir))


# ----- language model ------------------------------------------------------------------------
def test_lm_and_tokenizer_gain_image_token_and_the_model_runs(
    lm_dir, bert_dir, blip2_dir, tmp_path
):
    bundle = build_model("tiny", seed=0, qformer_text_input=True)
    report = init_from_pretrained(
        bundle, vision=str(blip2_dir), qformer=str(bert_dir), lm=str(lm_dir)
    )
    assert report["random_init"] == ["language_projection"]
    source = MistralForCausalLM.from_pretrained(lm_dir)
    vocab = source.config.vocab_size
    tok, model = bundle.tokenizer, bundle.model
    lm_report = report["language_model"]
    assert lm_report["added_tokens"] == [IMAGE_TOKEN] and lm_report["pad_token"].startswith("<unk>")
    assert len(tok) == vocab + 1 and tok.convert_tokens_to_ids(IMAGE_TOKEN) == vocab
    assert model.config.image_token_index == vocab == lm_report["image_token_index"]
    assert model.config.text_config.vocab_size == vocab + 1 == bundle.arch.vocab_size
    assert model.get_input_embeddings().weight.shape[0] == vocab + 1
    assert model.language_model.lm_head.weight.shape[0] == vocab + 1
    assert model.config.text_config.rope_theta == 1e6  # the LM's own config came with it
    theirs, ours = source.state_dict(), model.language_model.state_dict()
    for k, v in theirs.items():
        assert torch.equal(ours[k][: v.shape[0]], v), k

    img = Image.fromarray((np.random.default_rng(0).random((48, 48)) * 255).astype("uint8"))
    pixels = bundle.image_processor(images=[img], return_tensors="pt")["pixel_values"]
    built = build_inputs(
        tok,
        "Is there a pleural effusion?",
        "No",
        num_images=1,
        num_query_tokens=TINY.num_query_tokens,
    )
    inputs = built.tensors()
    assert (inputs["input_ids"] == vocab).sum() == TINY.num_query_tokens
    with torch.no_grad():
        logits = lm_logits(model, inputs["input_ids"], inputs["attention_mask"], pixels)
    assert logits.shape == (1, len(built.input_ids), vocab + 1) and logits.isfinite().all()

    save_bundle(bundle, tmp_path / "ckpt")  # the checkpoint reloads with the same model
    again = load_bundle(tmp_path / "ckpt")
    assert again.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == vocab
    assert again.model.config.image_token_index == vocab
    with torch.no_grad():
        logits2 = lm_logits(again.model, inputs["input_ids"], inputs["attention_mask"], pixels)
    assert torch.allclose(logits, logits2, atol=1e-5)


def test_lm_tokenizer_that_has_image_token_is_not_resized(tmp_path):
    tok = load_tokenizer()  # the project's tokenizer already carries <image> and <pad>
    folder = _write_lm(tmp_path / "lm", tok)
    bundle = build_model("tiny", seed=0)
    report = init_from_pretrained(bundle, lm=str(folder))["language_model"]
    assert report["added_tokens"] == [] and "pad_token" not in report
    assert report["vocab_size"] == len(tok) == bundle.model.config.text_config.vocab_size
    assert bundle.model.config.image_token_index == tok.convert_tokens_to_ids(IMAGE_TOKEN)


def test_lm_refuses_misfit_and_missing_weights(lm_dir, tmp_path):
    narrow = tmp_path / "narrow"
    MistralConfig(
        hidden_size=64,
        intermediate_size=TINY.text_intermediate,
        num_hidden_layers=TINY.text_layers,
        num_attention_heads=TINY.text_heads,
        num_key_value_heads=TINY.text_kv_heads,
    ).save_pretrained(narrow)
    with pytest.raises(ValueError, match=r"sizes \(hidden 64.*model's \(hidden 96"):
        init_from_pretrained(build_model("tiny", seed=0), lm=str(narrow))
    gone = _edit_weights(lm_dir, tmp_path / "gone", lambda s: s.pop("model.norm.weight"))
    with pytest.raises(PretrainedInitError, match=r"missing keys: model\.norm\.weight"):
        init_from_pretrained(build_model("tiny", seed=0), lm=str(gone))


@pytest.mark.parametrize(
    "part, hub_id",
    [
        ("vision", "Salesforce/blip2-opt-2.7b"),
        ("qformer", "bert-base-uncased"),
        ("lm", "mistralai/Mistral-7B-v0.1"),
    ],
)
def test_absent_weights_say_what_to_download(part, hub_id, tmp_path):
    flag = {"vision": "--init-vision", "qformer": "--init-qformer", "lm": "--init-lm"}[part]
    local = f"models/{hub_id.split('/')[-1]}"
    with pytest.raises(FileNotFoundError) as info:
        init_from_pretrained(build_model("tiny", seed=0), **{part: str(tmp_path / "absent")})
    assert f"huggingface-cli download {hub_id} --local-dir {local}" in str(info.value)
    assert f"pass {flag} {local}" in str(info.value)


# ----- CLI -----------------------------------------------------------------------------------
def test_cli_train_starts_from_pretrained_parts(bert_dir, lm_dir, tmp_path, capsys):
    store = tmp_path / "store"
    write_store(
        store,
        [
            Instance(
                instance_id=f"p/{i}",
                task="FindingsGeneration",
                dataset="Phantom",
                split="train",
                question="Describe the findings.",
                answer=answer,
                template_format="findings_generation",
                template_index=0,
            )
            for i, answer in enumerate(["no finding.", "pleural effusion."] * 2)
        ],
    )
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--stage",
            "0",
            "--config",
            "tiny",
            "--data",
            str(store),
            "--output",
            str(out),
            "--init-qformer",
            str(bert_dir),
            "--init-lm",
            str(lm_dir),
            "--max-steps",
            "1",
            "--backend",
            "torch",
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and '"qformer"' in printed and '"image_token_index"' in printed
    saved = load_bundle(out / "model")
    bert = BertModel.from_pretrained(bert_dir).state_dict()
    assert torch.equal(
        saved.model.qformer.state_dict()["encoder.layer.0.attention.attention.query.weight"],
        bert["encoder.layer.0.attention.self.query.weight"],
    )
    image_id = saved.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_id == saved.model.config.image_token_index == len(saved.tokenizer) - 1

    rc = main(
        [
            "train",
            "--stage",
            "0",
            "--data",
            str(store),
            "--output",
            str(tmp_path / "x"),
            "--init",
            str(out / "model"),
            "--init-qformer",
            str(bert_dir),
        ]
    )
    assert rc == 2 and "--init" in capsys.readouterr().err
