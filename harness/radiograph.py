"""Radiograph files -> the 8-bit RGB picture every model's processor reads.

Why this exists: radiographs are not all 8-bit. Pillow's `convert("RGB")` clips a 16-bit
image at 255 (a 12-bit film becomes ~94% white), and DICOM, the format radiology stores, is
not an image format Pillow reads at all. Every place an image becomes pixels (the engine, the
pre-flight check, `chexbench data validate`, reader-study thumbnails, the training loader)
goes through `decode`, so a film scores the same whichever format it is stored in.

The exact conversion per format is specified in docs/images.md; in short:

- 8-bit files (PNG, JPEG, ...): Pillow's own `convert("RGB")`, unchanged;
- 16-bit / 32-bit integer PNG and TIFF: ``round(255 * v / (2**bits - 1))`` with ``bits`` the
  file's declared depth (a PNG's sBIT chunk when the samples fit it), never the film's own
  maximum; float images are read as [0, 1];
- DICOM (pydicom): modality LUT or rescale, then the VOI LUT or window (or the full stored
  range), scaled from that output range to 0..255, MONOCHROME1 inverted; multi-frame refused.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.defaults import MAX_IMAGE_PIXELS
from harness.errors import UserError, one_line

# A film with more than this share of its pixels at 0 or 255 after conversion is reported:
# the phantom films have at most ~4%, real chest films rarely more than a third (borders).
SATURATION_WARN_FRACTION = 0.5
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
COLOR_DICOM = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_warned: set[tuple[str, str]] = set()
_pixel_limit = MAX_IMAGE_PIXELS


class RadiographError(UserError, ValueError):
    """A file that cannot become a picture; `reason` is the short cause without the path."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # pickled whole: the engine's decode processes send it back
        return type(self), (self.path, self.reason)


class RadiographWarning(UserWarning):
    """A film that decodes but probably not as intended (mostly saturated, or very dark)."""


def _warn_once(path: str | Path, kind: str, message: str) -> None:
    key = (str(path), kind)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{path}: {message}", RadiographWarning, stacklevel=3)


def is_dicom(path: str | Path) -> bool:
    """DICOM part-10 files carry "DICM" after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255, rounding to nearest (half up), clipping outside.

    For integer samples and ``high - low = 2**bits - 1`` no value lands on a half (2*v*255 is
    even, (2**bits - 1) * odd is odd), so the tie rule never decides a pixel; v * 257 in a
    16-bit file comes back as exactly v.
    """
    unit = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return np.floor(np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _png_sbit(path: Path) -> int | None:
    """The grey sample's sBIT value of a PNG (Pillow does not expose the chunk), if present."""
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        while header := fh.read(8):
            if len(header) < 8:
                return None
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):  # sBIT must come before the image data
                return None
            body = fh.read(length)
            fh.seek(4, 1)  # CRC
            if kind == b"sBIT" and body:
                return body[0]
    return None


def _declared_bits(im: Image.Image) -> int:
    """The container's bit depth: a TIFF's BitsPerSample, else 16 (PNG's deepest grey, and
    what Pillow's 16-bit modes hold)."""
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        if isinstance(bits, tuple | list):
            bits = bits[0]
        if bits:
            return int(bits)
    return 16


def _high_depth_to_rgb(im: Image.Image, path: Path | None) -> Image.Image:
    name = path or "image"
    values = np.asarray(im)
    if im.mode == "F":
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise RadiographError(
                name,
                "floating-point image outside [0, 1] (its range is "
                "undefined; store it as 16-bit integers)",
            )
        return Image.fromarray(to_8bit(values, 0.0, 1.0), "L").convert("RGB")
    if values.min() < 0:
        raise RadiographError(name, "signed integer image with negative samples (unsupported)")
    bits = _declared_bits(im)
    sbit = _png_sbit(path) if (path is not None and im.format == "PNG") else None
    top = int(values.max())
    if sbit is not None and 1 <= sbit < bits and top < 2**sbit:
        bits = sbit  # raw n-bit samples in a 16-bit container, as the sBIT chunk says
    if top >= 2**bits:
        raise RadiographError(name, f"sample {top} exceeds the declared {bits}-bit depth")
    if bits > 8 and top < 2 ** (bits - 4):
        _warn_once(
            name,
            "dark",
            f"dark film: samples use at most {bits - 4} of {bits} bits "
            f"(max {top}); a 12-bit film in a 16-bit PNG needs an sBIT chunk of 12 "
            "(docs/images.md)",
        )
    return Image.fromarray(to_8bit(values, 0, 2**bits - 1), "L").convert("RGB")


def to_rgb8(im: Image.Image, path: str | Path | None = None) -> Image.Image:
    """An already opened PIL image -> 8-bit RGB by the rules above (`path` names it, and lets
    a PNG's sBIT chunk be read)."""
    where = Path(path) if path is not None else None
    if getattr(im, "n_frames", 1) > 1:
        raise RadiographError(
            where or "image",
            f"{im.n_frames} frames in one file; "
            "CheXbench scores one picture per file (export the frame you mean)",
        )
    if im.mode in HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(im, where)
    return im.convert("RGB")


# ----- DICOM ---------------------------------------------------------------------------------
def _modality_bounds(ds) -> tuple[float, float]:
    """The modality output's (first, last): stored range by BitsStored through the modality
    LUT or rescale, in the orientation pydicom's windowing maps onto (PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        first, last = 0.0, float(2**bits - 1)
    else:
        first, last = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        first, last = first * slope + intercept, last * slope + intercept
    return first, last


def _dicom_unit(ds, pixels: np.ndarray) -> np.ndarray:
    """Monochrome pixels -> [0, 1] with 1 = white: modality, VOI, output range, MONOCHROME1."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(pixels, ds)
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq and voi_seq[0].get("LUTDescriptor") and voi_seq[0].get("LUTData") is not None:
        # The LUT is indexed by integer modality values (rescale output may be float).
        values = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        unit = values / float(2 ** int(voi_seq[0].LUTDescriptor[2]) - 1)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        first, last = _modality_bounds(ds)  # windowing maps onto [first, last]
        unit = (apply_windowing(values, ds, index=0) - first) / (last - first)
    else:
        low, high = sorted(_modality_bounds(ds))
        unit = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    unit = np.clip(unit, 0.0, 1.0)
    return 1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit


def _dicom_to_rgb(path: Path) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=not is_dicom(path))
    except (InvalidDicomError, OSError, ValueError, EOFError, struct.error) as exc:
        raise RadiographError(path, f"not a readable DICOM file ({one_line(exc)})") from exc
    if "PixelData" not in ds:
        raise RadiographError(path, "DICOM file without pixel data")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise RadiographError(
            path,
            f"multi-frame DICOM ({frames} frames); CheXbench scores "
            "one picture per file (export the frame you mean)",
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    _check_size(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0), path)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many kinds; name them
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax_name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise RadiographError(
            path, f"cannot decode DICOM pixel data ({syntax_name}): {one_line(exc)}"
        ) from exc
    if photometric in ("MONOCHROME1", "MONOCHROME2") and pixels.ndim == 2:
        return Image.fromarray(to_8bit(_dicom_unit(ds, pixels), 0.0, 1.0), "L").convert("RGB")
    if photometric in COLOR_DICOM and pixels.ndim == 3 and pixels.dtype == np.uint8:
        return Image.fromarray(pixels, "RGB")  # pydicom has converted YBR to RGB
    raise RadiographError(
        path,
        f"unsupported DICOM image: PhotometricInterpretation "
        f"{photometric or 'missing'}, {pixels.dtype} {pixels.shape}",
    )


# ----- size limit ----------------------------------------------------------------------------
def set_pixel_limit(limit: int | None) -> None:
    """The largest width x height `decode` reads (None: the default, `MAX_IMAGE_PIXELS`).

    Pillow's own check is moved with it: it warns above its limit and refuses above twice that,
    before our check sees the size."""
    global _pixel_limit
    if limit is not None and limit < 1:
        raise UserError(f"the image size limit must be at least 1 pixel, got {limit}")
    _pixel_limit = limit or MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = _pixel_limit


def pixel_limit() -> int:
    return _pixel_limit


def _check_size(width: int, height: int, path: Path) -> None:
    if width * height > _pixel_limit:
        raise RadiographError(path, _too_large(f"{width}x{height} pixels"))


def _too_large(size: str) -> str:
    return f"{size} is over the image size limit of {_pixel_limit:,} pixels (--max-image-pixels)"


# ----- the one entry point -------------------------------------------------------------------
def saturated_fraction(rgb: Image.Image) -> float:
    """Share of pixels that are black (0, 0, 0) or white (255, 255, 255).

    Bitwise over the three channel planes: a pixel is black iff r | g | b == 0 and white iff
    r & g & b == 255. `(px == 0).all(-1)` says the same but reduces over a length-3 axis,
    which took 220 of the 265 ms that decoding a 2048 px JPEG cost (docs/benchmarks.md)."""
    px = np.asarray(rgb)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    black = np.count_nonzero((r | g | b) == 0)
    white = np.count_nonzero((r & g & b) == 255)
    return (black + white) / max(1, r.size)


def _warn_if_saturated(rgb: Image.Image, path: Path) -> None:
    saturated = saturated_fraction(rgb)
    if saturated > SATURATION_WARN_FRACTION:
        _warn_once(
            path,
            "saturated",
            f"{saturated:.0%} of pixels are black or white after "
            "conversion; check its bit depth / window (docs/images.md)",
        )


def decode(path: str | Path) -> Image.Image:
    """The file's pixels as 8-bit RGB; `RadiographError` (one line, naming it) if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise RadiographError(path, "missing")
    if is_dicom(path) or path.suffix.lower() in DICOM_SUFFIXES:
        rgb = _dicom_to_rgb(path)
    else:
        try:
            with warnings.catch_warnings():  # the size is checked (and refused) just below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
            with im:
                _check_size(*im.size, path)
                rgb = to_rgb8(im, path)
        except Image.DecompressionBombError as exc:  # Pillow's own check, above twice ours
            count = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(count.group(1)):,} pixels" if count else "the image"
            raise RadiographError(path, _too_large(size)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise RadiographError(path, f"{exc.__class__.__name__}: {one_line(exc)}") from exc
    _warn_if_saturated(rgb, path)
    return rgb
