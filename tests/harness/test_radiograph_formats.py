"""Radiographs stored as 16-bit PNG/TIFF and as DICOM decode to the 8-bit films they were made
from, and score the same through `chexbench run` (docs/images.md).

Every copy is written here from a phantom film's 8-bit values v by the format's own rules
(v * 257 in 16 bits; round(v * 4095 / 255) in 12 bits with an sBIT chunk; DICOM stored values
with a rescale and a window chosen so the DICOM display pipeline gives back v / 255), so the
expected pixels are v themselves, never the decoder's output.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from harness.cli import main
from harness.images import ImageRef, check_image
from harness.phantom import generate_phantom
from harness.radiograph import RadiographError, RadiographWarning, decode
from model_adapters.engine import load_rgb

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
TASKS = "chexbench_view_classification_mimic_cxr,chexbench_single_disease_identification_openi"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(
        tmp_path_factory.mktemp("films"), n_per_pair=2, image_size=64, n_text=0, n_fairness=0
    )


def _films(phantom, n: int | None = None) -> list[str]:
    data = json.loads(phantom.data_json.read_text())
    paths = sorted(
        {
            p
            for items in data.values()
            for item in items
            for p in (
                [item["image_path"]] if isinstance(item["image_path"], str) else item["image_path"]
            )
        }
    )
    return paths[:n] if n else paths


def _gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"  # the phantom writes 8-bit grey films
        return np.asarray(im).astype(np.int64)


# ----- writers: 8-bit values v -> a file in another format -----------------------------------
def _png16(v: np.ndarray, out: Path) -> Path:
    out = out.with_suffix(".png")
    Image.fromarray((v * 257).astype(np.uint16)).save(out)
    return out


def _twelve_bit(v: np.ndarray) -> np.ndarray:
    return np.rint(v * 4095 / 255).astype(np.uint16)


def _png12_sbit(v: np.ndarray, out: Path) -> Path:
    """Raw 12-bit samples in a 16-bit PNG, the sBIT chunk saying 12 significant bits."""
    out = out.with_suffix(".png")
    info = PngInfo()
    info.add(b"sBIT", bytes([12]))
    Image.fromarray(_twelve_bit(v)).save(out, pnginfo=info)
    return out


def _tiff16(v: np.ndarray, out: Path) -> Path:
    out = out.with_suffix(".tiff")
    Image.fromarray((v * 257).astype(np.uint16)).save(out)
    return out


def _tiff_float(v: np.ndarray, out: Path) -> Path:
    out = out.with_suffix(".tif")
    Image.fromarray((v / 255).astype(np.float32), "F").save(out)
    return out


def _dataset(stored: np.ndarray, photometric: str, bits: int, **attrs) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DX_STORAGE
    uid = generate_uid(entropy_srcs=[stored.tobytes().hex()[:64], photometric, str(bits)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
    ds.Modality = "DX"
    ds.set_pixel_data(stored, photometric, bits)
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _save(ds: Dataset, out: Path, suffix: str = ".dcm") -> Path:
    out = out.with_suffix(suffix)
    ds.save_as(out, enforce_file_format=True)
    return out


def _dcm_mono2_window(v: np.ndarray, out: Path) -> Path:
    """12-bit stored 16 v; rescale m = 2 s - 100; LINEAR window (c 3980.5, w 8161), i.e.
    ((m - 3980) / 8160 + 0.5) of the output range = 32 v / 8160 = v / 255 (PS3.3 C.11.2.1.2)."""
    stored = (16 * v).astype(np.uint16)
    return _save(
        _dataset(
            stored,
            "MONOCHROME2",
            12,
            RescaleSlope=2,
            RescaleIntercept=-100,
            WindowCenter=3980.5,
            WindowWidth=8161,
        ),
        out,
    )


def _dcm_mono1_window(v: np.ndarray, out: Path) -> Path:
    """MONOCHROME1 (white = low): 10-bit stored 4 (255 - v); m = s / 2 + 10 = 520 - 2 v;
    window (c 265.5, w 511) gives (510 - 2 v) / 510 = 1 - v / 255, inverted to v / 255."""
    stored = (4 * (255 - v)).astype(np.uint16)
    return _save(
        _dataset(
            stored,
            "MONOCHROME1",
            10,
            RescaleSlope=0.5,
            RescaleIntercept=10,
            WindowCenter=265.5,
            WindowWidth=511,
        ),
        out,
    )


def _dcm_mono1_full_range(v: np.ndarray, out: Path) -> Path:
    """No window: the full 16-bit stored range is displayed, inverted for MONOCHROME1."""
    return _save(_dataset(((255 - v) * 257).astype(np.uint16), "MONOCHROME1", 16), out)


def _dcm_voi_lut(v: np.ndarray, out: Path) -> Path:
    """A VOI LUT sequence (preferred over the window also present): stored 16 v + 3 (12 bits),
    LUT[i] = 257 (i // 16) with 16-bit entries, so the LUT output is 257 v of 65535."""
    ds = _dataset(
        (16 * v + 3).astype(np.uint16),
        "MONOCHROME2",
        12,
        RescaleSlope=1,
        RescaleIntercept=0,
        WindowCenter=100,
        WindowWidth=10,
    )
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first, bits
    item.add_new(0x00283006, "US", [257 * (i // 16) for i in range(4096)])  # LUT Data
    ds.VOILUTSequence = [item]
    return _save(ds, out)


def _dcm_rle(v: np.ndarray, out: Path) -> Path:
    ds = _dataset((v * 257).astype(np.uint16), "MONOCHROME2", 16)
    ds.compress(RLELossless)
    return _save(ds, out)


def _dcm_j2k(v: np.ndarray, out: Path) -> Path:
    ds = _dataset(_twelve_bit(v), "MONOCHROME2", 12)
    ds.compress(JPEG2000Lossless)  # encoded by pylibjpeg-openjpeg
    return _save(ds, out)


def _dcm_named_png(v: np.ndarray, out: Path) -> Path:
    """A DICOM file with a .png name: recognised by its "DICM" marker, not its suffix."""
    return _save(_dataset((v * 257).astype(np.uint16), "MONOCHROME2", 16), out, ".png")


EXACT: dict[str, Callable[[np.ndarray, Path], Path]] = {
    "png16": _png16,
    "png12_sbit": _png12_sbit,
    "tiff16": _tiff16,
    "tiff_float": _tiff_float,
    "dcm_mono2_window": _dcm_mono2_window,
    "dcm_mono1_window": _dcm_mono1_window,
    "dcm_mono1_full_range": _dcm_mono1_full_range,
    "dcm_voi_lut": _dcm_voi_lut,
    "dcm_rle": _dcm_rle,
    "dcm_j2k": _dcm_j2k,
    "dcm_named_png": _dcm_named_png,
}


@pytest.mark.parametrize("fmt", list(EXACT))
def test_each_format_decodes_to_the_original_8bit_pixels(phantom, tmp_path, fmt):
    for k, rel in enumerate(_films(phantom, 3)):
        v = _gray(phantom.out_dir / rel)
        path = EXACT[fmt](v, tmp_path / f"film{k}")
        expected = np.repeat(v[..., None], 3, axis=-1).astype(np.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RadiographWarning)  # none of these is suspicious
            for got in (decode(path), ImageRef(str(path)).open(), load_rgb(str(path))):
                assert got.mode == "RGB" and got.size == (v.shape[1], v.shape[0])
                np.testing.assert_array_equal(np.asarray(got), expected, err_msg=f"{fmt} {rel}")
        assert check_image(path) is None


def test_pil_image_of_16_bits_is_scaled_not_clipped_in_the_engine(phantom, tmp_path):
    v = _gray(phantom.out_dir / _films(phantom, 1)[0])
    with Image.open(_png16(v, tmp_path / "film")) as im:
        assert im.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(load_rgb(im))[..., 0], v)


def test_12bit_film_that_naive_convert_saturates_is_not_saturated(phantom, tmp_path):
    v = _gray(phantom.out_dir / _films(phantom, 1)[0])
    path = _png12_sbit(v, tmp_path / "film12")
    with Image.open(path) as im:
        naive = np.asarray(im.convert("RGB"))[..., 0]
    assert (naive == 255).mean() > 0.5  # Pillow clips every sample above 255
    with warnings.catch_warnings():
        warnings.simplefilter("error", RadiographWarning)
        ours = np.asarray(decode(path))[..., 0]
    assert (ours == 255).mean() < 0.05
    np.testing.assert_array_equal(ours, v)


def test_saturated_film_warns_once_naming_the_file(phantom, tmp_path):
    v = _gray(phantom.out_dir / _films(phantom, 1)[0])
    # A window of width 2 around 8 makes almost every pixel black or white.
    path = _save(
        _dataset(v.astype(np.uint16), "MONOCHROME2", 8, WindowCenter=8, WindowWidth=2),
        tmp_path / "narrow",
    )
    with pytest.warns(RadiographWarning, match=f"{path}: .*% of pixels are black or white"):
        img = decode(path)
    assert ((np.asarray(img) == 0) | (np.asarray(img) == 255)).mean() > 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode(path)
    assert not [w for w in caught if issubclass(w.category, RadiographWarning)]


def test_12bit_film_without_sbit_is_read_as_16_bits_with_a_warning(phantom, tmp_path):
    v = _gray(phantom.out_dir / _films(phantom, 1)[0])
    path = tmp_path / "nosbit.png"
    Image.fromarray(_twelve_bit(v)).save(path)
    with pytest.warns(RadiographWarning, match=f"{path}: dark film.*sBIT"):
        ours = np.asarray(decode(path))[..., 0]
    np.testing.assert_array_equal(
        ours, np.floor(_twelve_bit(v).astype(np.int64) * 255 / 65535 + 0.5)
    )


def test_jpeg_baseline_dicom_decodes(phantom, tmp_path):
    """RSNA's films are JPEG Baseline DICOMs: the compressed path decodes to what Pillow makes
    of the same JPEG stream (lossy, so compared with that, to within IDCT rounding)."""
    v = _gray(phantom.out_dir / _films(phantom, 1)[0])
    buf = io.BytesIO()
    Image.fromarray(v.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    ds = _dataset(v.astype(np.uint8), "MONOCHROME2", 8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    path = _save(ds, tmp_path / "jpeg")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        reference = np.asarray(im).astype(int)
    ours = np.asarray(decode(path))[..., 0].astype(int)
    assert np.abs(ours - reference).max() <= 2


def _multiframe(v: np.ndarray, out: Path) -> Path:
    return _save(_dataset(np.stack([v, v]).astype(np.uint16), "MONOCHROME2", 8), out)


def test_multiframe_dicom_is_refused_in_one_line(phantom, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(phantom.out_dir, root)
    data = json.loads((root / "data.json").read_text())
    item = data["View Classification"][0]
    rel = item["image_path"][0] if isinstance(item["image_path"], list) else item["image_path"]
    path = _multiframe(_gray(root / rel), root / "multi")
    item["image_path"] = [path.name]
    (root / "data.json").write_text(json.dumps(data))
    with pytest.raises(RadiographError, match="multi-frame DICOM \\(2 frames\\)"):
        decode(path)
    code = main(
        [
            "run",
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke,device=cpu",
            "--data",
            str(root / "data.json"),
            "--tasks",
            TASKS,
            "--limit",
            "2",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(path) in err and "multi-frame" in err
    assert main(["data", "validate", "--data", str(root / "data.json")]) == 1
    out = capsys.readouterr().out
    assert path.name in out and "multi-frame" in out


# ----- the same films through `chexbench run` --------------------------------------------------
def _copy_set(phantom, out: Path, writer: Callable[[np.ndarray, Path], Path]) -> Path:
    """data.json + every film rewritten by `writer`, paths pointing at the new files."""
    data = json.loads(phantom.data_json.read_text())
    moved: dict[str, str] = {}
    for rel in _films(phantom):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        moved[rel] = writer(_gray(phantom.out_dir / rel), dest).relative_to(out).as_posix()
    for items in data.values():
        for item in items:
            paths = item["image_path"]
            item["image_path"] = (
                moved[paths] if isinstance(paths, str) else [moved[p] for p in paths]
            )
    (out / "data.json").write_text(json.dumps(data))
    return out / "data.json"


def _logprobs(data_json: Path, out: Path) -> dict[tuple[str, str], list[float]]:
    from chexagent.demo import DEMO_MODEL_DIR

    assert (
        main(
            [
                "run",
                "--model",
                "chexagent",
                "--model-args",
                f"pretrained={DEMO_MODEL_DIR},dtype=float32,device=cpu",
                "--data",
                str(data_json),
                "--tasks",
                TASKS,
                "--limit",
                "2",
                "--bootstrap-b",
                "10",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    (samples,) = out.rglob("samples.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {(r["task"], r["item_id"]): r["logprobs"] for r in rows}


@pytest.mark.usefixtures("single_thread")
def test_16bit_and_dicom_copies_score_like_the_8bit_films(phantom, tmp_path):
    original = _logprobs(phantom.data_json, tmp_path / "runs-8bit")
    assert len(original) == 4 and all(len(lp) >= 2 for lp in original.values())
    for name, writer in (
        ("png16", _png16),
        ("dcm_mono2_window", _dcm_mono2_window),
        ("dcm_mono1_window", _dcm_mono1_window),
    ):
        copy = _logprobs(_copy_set(phantom, tmp_path / name, writer), tmp_path / f"runs-{name}")
        assert copy.keys() == original.keys(), name
        worst = max(
            abs(a - b) for key in original for a, b in zip(original[key], copy[key], strict=True)
        )
        assert worst <= 1e-3, (name, worst)


def test_training_loader_reads_dicom_as_the_benchmark_does(phantom, tmp_path):
    from transformers import BlipImageProcessor

    from chexagent.training.data import ImageLoader

    rel = _films(phantom, 1)[0]
    dicom = _dcm_mono1_window(_gray(phantom.out_dir / rel), tmp_path / "film")
    loader = ImageLoader(BlipImageProcessor(size={"height": 32, "width": 32}), cache=False)
    assert torch.equal(loader(str(dicom)), loader(str(phantom.out_dir / rel)))


def test_broken_dicom_is_unreadable_with_its_reason(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's own notes on the bad header
        reason = check_image(path)
        assert reason is not None and reason.startswith("unreadable ("), reason
        with pytest.raises(RadiographError, match=str(path)):
            decode(path)
