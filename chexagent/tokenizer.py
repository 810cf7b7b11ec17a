"""The tiny models' tokenizer: a byte-level BPE trained on chest X-ray vocabulary.

Byte-level so that any text (unicode included) encodes without <unk>; small so that tiny
models stay tiny. The trained file ships in chexagent/assets/tokenizer/; `build_tokenizer`
re-creates it deterministically (`python -m chexagent.tokenizer` rewrites the asset).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from harness.errors import WeightsMissing

ASSET_DIR = Path(__file__).parent / "assets" / "tokenizer"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]
VOCAB_SIZE = 1200

_CORPUS_WORDS = """
USER ASSISTANT Given the image(s) chest X-ray radiograph CXR What is the view of this
Which finding is present Does this contain Is there any evidence of Yes No yes no AP PA
Lateral LL lateral frontal anteroposterior posteroanterior left right bilateral mild moderate
severe small large no acute cardiopulmonary process heart size normal enlarged cardiomegaly
pleural effusion pneumothorax pneumonia atelectasis consolidation edema opacity lung lesion
fracture support devices enlarged cardiomediastinum lungs are clear the cardiomediastinal
silhouette within normal limits there is no focal consolidation blunting of the costophrenic
angle angles sharp visible apical pleural line mediastinal contours unremarkable findings
impression indication history comparison technique options following answer question
describe write a structured findings section for the Summarize following Findings diseases
present in image which of these are none of the above upper lower lobe base apex hilum
trachea midline stable unchanged new increased decreased interval right-sided left-sided
pulmonary vascular congestion catheter tube line pacemaker sternotomy wires osseous
structures intact degenerative changes spine diaphragm hemidiaphragm elevated subsegmental
""".split()


def _corpus() -> list[str]:
    lines = [" ".join(_CORPUS_WORDS[i : i + 12]) for i in range(0, len(_CORPUS_WORDS), 12)]
    lines += [w.lower() for w in _CORPUS_WORDS] + [w.capitalize() for w in _CORPUS_WORDS]
    lines += ["0 1 2 3 4 5 6 7 8 9 10 . , : ; ( ) [ ] ? ! - _ / \" ' %"]
    return lines * 3


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=[IMAGE_TOKEN],
        padding_side="right",
        model_max_length=1024,
    )


def load_tokenizer() -> PreTrainedTokenizerFast:
    if not (ASSET_DIR / "tokenizer.json").is_file():
        raise WeightsMissing(
            f"{ASSET_DIR}/tokenizer.json is missing; run `python -m chexagent.tokenizer`"
        )
    return PreTrainedTokenizerFast.from_pretrained(ASSET_DIR)


if __name__ == "__main__":
    build_tokenizer().save_pretrained(ASSET_DIR)
    print(f"wrote {ASSET_DIR}")
