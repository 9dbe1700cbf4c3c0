"""The glyph bank: about 1,000 character classes rendered from matplotlib's fonts.

A class is one Unicode character; its instances are its renderings in each of
the bundled fonts whose cmap has it (DejaVu Sans, Serif and Mono and STIX
General, 4 styles each: up to 16 "drawers", like Omniglot's 20). Characters are
kept when at least :data:`MIN_FONTS` fonts have them and their reference
rendering is neither tiny nor a near-copy of a character already kept (Latin
``A``, Greek ``Α`` and Cyrillic ``А`` are one class, not three). Classes are
then split disjointly into train/val/test by a fixed permutation.

Rendering is deterministic (sorted fonts and characters, Pillow's basic layout)
and is done once: the bank is cached as a ``.npz`` under ``$METAWEB_CACHE_DIR``
(default ``~/.cache/metaweb``), written atomically. Pillow and fontTools are
imported only when rendering.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.metalearn.families._base import FAMILY_SEED_SALT
from workers.metalearn.fileio import atomic_writer

BANK_VERSION = 1
SIZE = 28
#: Rendered at this multiple of 28 px, then box-averaged down (anti-aliasing).
SUPERSAMPLE = 2
#: Font size in output pixels: an em is 20 px, capitals about 15 px high.
FONT_PX = 20
#: Glyphs larger than this (either side, output pixels) are shrunk to fit, leaving room to augment.
FIT_PX = 24
#: Smallest rendering kept: its larger side in output pixels, and its ink in pixel units.
MIN_SIDE_PX = 7
MIN_INK = 12.0
#: A character needs this many fonts (instances).
MIN_FONTS = 8
#: Two characters whose reference renderings overlap this much (IoU of their ink) are one class.
DUPLICATE_IOU = 0.75
CLASS_COUNT = 1000
#: Fractions of classes in val and test; train gets the rest (64/16/20 %).
VAL_FRACTION = 0.16
TEST_FRACTION = 0.20
_SPLIT_SEED = 0x6C7F0001

#: The fonts, sorted; each is one "drawer".
FONTS: tuple[str, ...] = tuple(
    sorted(
        [
            "DejaVuSans.ttf",
            "DejaVuSans-Bold.ttf",
            "DejaVuSans-Oblique.ttf",
            "DejaVuSans-BoldOblique.ttf",
            "DejaVuSerif.ttf",
            "DejaVuSerif-Bold.ttf",
            "DejaVuSerif-Italic.ttf",
            "DejaVuSerif-BoldItalic.ttf",
            "DejaVuSansMono.ttf",
            "DejaVuSansMono-Bold.ttf",
            "DejaVuSansMono-Oblique.ttf",
            "DejaVuSansMono-BoldOblique.ttf",
            "STIXGeneral.ttf",
            "STIXGeneralBol.ttf",
            "STIXGeneralItalic.ttf",
            "STIXGeneralBolIta.ttf",
        ]
    )
)
_REFERENCE_FONT = "DejaVuSans.ttf"

# Unicode ranges left out: Arabic (needs shaping), pieces of tall brackets, box drawing
# and block elements, Braille (dot grids), private use, presentation forms, specials.
_EXCLUDED_RANGES = (
    (0x0600, 0x06FF),
    (0x239B, 0x23B3),
    (0x2500, 0x259F),
    (0x2800, 0x28FF),
    (0xE000, 0xF8FF),
    (0xFB50, 0xFFFF),
)
# Letters, numbers and symbols, without modifier letters (superscripts) and "other" numbers.
_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lo", "Nd", "Sm", "Sc", "So"})


@dataclass(frozen=True)
class GlyphBank:
    """Rendered instances, grouped by class.

    ``images`` is ``[M, 28, 28]`` uint8 (ink 255); class ``c``'s instances are
    ``images[offsets[c]:offsets[c+1]]``, drawn by ``fonts[font_ids[m]]``.
    ``codepoints[c]`` is class ``c``'s character; ``splits[s]`` lists the classes of split ``s``.
    """

    images: np.ndarray
    offsets: np.ndarray
    font_ids: np.ndarray
    codepoints: np.ndarray
    splits: dict[str, np.ndarray]
    fonts: tuple[str, ...]

    def instances(self, cls: int) -> np.ndarray:
        return np.arange(self.offsets[cls], self.offsets[cls + 1])


def font_dir() -> Path:
    """matplotlib's bundled TTF folder, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the glyphs family needs matplotlib's bundled fonts; install matplotlib")
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


def cache_dir() -> Path:
    return Path(os.environ.get("METAWEB_CACHE_DIR") or Path.home() / ".cache" / "metaweb")


def _fingerprint() -> str:
    """Changes whenever the rendering inputs do: constants, fonts, Pillow."""
    folder = font_dir()
    inputs = {
        "bank": BANK_VERSION,
        "render": [SIZE, SUPERSAMPLE, FONT_PX, FIT_PX, MIN_SIDE_PX, MIN_INK, MIN_FONTS, DUPLICATE_IOU],
        "classes": [CLASS_COUNT, VAL_FRACTION, TEST_FRACTION, _SPLIT_SEED],
        "fonts": [
            [name, (folder / name).stat().st_size if (folder / name).exists() else 0] for name in FONTS
        ],
        "pillow": importlib.metadata.version("pillow"),
    }
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:10]


def cache_path(family_version: int, max_classes: int | None) -> Path:
    subset = "" if max_classes is None else f"-c{max_classes}"
    return cache_dir() / f"glyphs-v{family_version}-{_fingerprint()}{subset}.npz"


_LOADED: dict[Path, GlyphBank] = {}


def load_bank(family_version: int, max_classes: int | None = None) -> GlyphBank:
    """The bank from memory, else from the cache file, else rendered and cached."""
    path = cache_path(family_version, max_classes)
    bank = _LOADED.get(path)
    if bank is None:
        bank = _read(path) if path.exists() else None
        if bank is None:
            bank = render_bank(max_classes)
            _write(path, bank)
        _LOADED[path] = bank
    return bank


def _read(path: Path) -> GlyphBank | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return GlyphBank(
                images=data["images"],
                offsets=data["offsets"],
                font_ids=data["font_ids"],
                codepoints=data["codepoints"],
                splits={s: data[f"split_{s}"] for s in ("train", "val", "test")},
                fonts=tuple(str(f) for f in data["fonts"]),
            )
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):
        return None  # unreadable or partial: render again


def _write(path: Path, bank: GlyphBank) -> None:
    with atomic_writer(path) as fh:
        np.savez_compressed(
            fh,
            images=bank.images,
            offsets=bank.offsets,
            font_ids=bank.font_ids,
            codepoints=bank.codepoints,
            fonts=np.array(bank.fonts),
            **{f"split_{s}": ids for s, ids in bank.splits.items()},
        )


# -- rendering -------------------------------------------------------------------------------


class _Renderer:
    def __init__(self) -> None:
        from fontTools.ttLib import TTFont
        from PIL import ImageFont

        folder = font_dir()
        self.fonts = [f for f in FONTS if (folder / f).exists()]
        self.cmaps = [set(TTFont(folder / f, lazy=True).getBestCmap()) for f in self.fonts]
        size = FONT_PX * SUPERSAMPLE
        self.faces = [
            ImageFont.truetype(str(folder / f), size=size, layout_engine=ImageFont.Layout.BASIC)
            for f in self.fonts
        ]

    def render(self, char: str, font: int) -> np.ndarray | None:
        """``char`` in font ``font``, centred on its ink, as float32 [28, 28] in [0, 1];
        None when the rendering is empty or too small."""
        from PIL import Image, ImageDraw

        face = self.faces[font]
        left, top, right, bottom = face.getbbox(char)
        if right <= left or bottom <= top:
            return None
        canvas = Image.new("L", (right - left + 2, bottom - top + 2))
        ImageDraw.Draw(canvas).text((1 - left, 1 - top), char, font=face, fill=255)
        box = canvas.getbbox()
        if box is None:
            return None
        glyph = canvas.crop(box)
        big = SIZE * SUPERSAMPLE
        fit = FIT_PX * SUPERSAMPLE
        if max(glyph.size) > fit:
            scale = fit / max(glyph.size)
            glyph = glyph.resize(
                (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                Image.Resampling.LANCZOS,
            )
        if max(glyph.size) < MIN_SIDE_PX * SUPERSAMPLE:
            return None
        out = Image.new("L", (big, big))
        out.paste(glyph, ((big - glyph.width) // 2, (big - glyph.height) // 2))
        image = (
            np.asarray(out, dtype=np.float32).reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))
        )
        image /= 255.0
        return image if image.sum() >= MIN_INK else None


def _candidates(renderer: _Renderer) -> list[tuple[int, list[int]]]:
    """(codepoint, fonts that have it) for every eligible character, most fonts first."""
    codepoints = sorted(set().union(*renderer.cmaps))
    found = []
    for cp in codepoints:
        if cp < 0x21 or cp > 0xFFFF or any(lo <= cp <= hi for lo, hi in _EXCLUDED_RANGES):
            continue
        char = chr(cp)
        if unicodedata.category(char) not in _CATEGORIES or unicodedata.decomposition(char):
            continue
        fonts = [i for i, cmap in enumerate(renderer.cmaps) if cp in cmap]
        if len(fonts) >= MIN_FONTS:
            found.append((cp, fonts))
    found.sort(key=lambda item: (-len(item[1]), item[0]))
    return found


def _reference(renderer: _Renderer, cp: int, fonts: list[int]) -> np.ndarray | None:
    ref = renderer.fonts.index(_REFERENCE_FONT) if _REFERENCE_FONT in renderer.fonts else fonts[0]
    return renderer.render(chr(cp), ref if ref in fonts else fonts[0])


def select_classes(renderer: _Renderer) -> list[tuple[int, list[int]]]:
    """Up to :data:`CLASS_COUNT` characters, most fonts first, no two alike; sorted by codepoint."""
    kept: list[tuple[int, list[int]]] = []
    masks = np.zeros((CLASS_COUNT, SIZE * SIZE), dtype=bool)
    areas = np.zeros(CLASS_COUNT, dtype=np.int64)
    for cp, fonts in _candidates(renderer):
        image = _reference(renderer, cp, fonts)
        if image is None:
            continue
        mask = image.reshape(-1) > 0.35
        n = len(kept)
        inter = masks[:n] @ mask if n else np.zeros(0)
        iou = inter / np.maximum(areas[:n] + mask.sum() - inter, 1)
        if n and iou.max() > DUPLICATE_IOU:
            continue
        masks[n], areas[n] = mask, mask.sum()
        kept.append((cp, fonts))
        if len(kept) == CLASS_COUNT:
            break
    return sorted(kept)


def _split(n: int) -> dict[str, np.ndarray]:
    """Disjoint class lists per split, from one fixed permutation of ``range(n)``."""
    order = np.random.default_rng([FAMILY_SEED_SALT, _SPLIT_SEED]).permutation(n)
    n_test, n_val = round(n * TEST_FRACTION), round(n * VAL_FRACTION)
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


def render_bank(max_classes: int | None = None) -> GlyphBank:
    """Render the bank (or, with ``max_classes``, the same classes' first members of
    each split in proportion: a quick subset for tests and previews)."""
    renderer = _Renderer()
    classes = select_classes(renderer)
    splits = _split(len(classes))
    if max_classes is not None and max_classes < len(classes):
        n_test, n_val = round(max_classes * TEST_FRACTION), round(max_classes * VAL_FRACTION)
        counts = {"test": n_test, "val": n_val, "train": max_classes - n_test - n_val}
        chosen = sorted(int(c) for s, k in counts.items() for c in splits[s][:k])
        renumber = {old: new for new, old in enumerate(chosen)}
        splits = {
            s: np.array([renumber[int(c)] for c in splits[s][:k]], dtype=np.int64) for s, k in counts.items()
        }
        classes = [classes[c] for c in chosen]

    images, font_ids, offsets = [], [], [0]
    for cp, fonts in classes:
        for font in fonts:
            image = renderer.render(chr(cp), font)
            if image is not None:
                images.append(np.round(image * 255).astype(np.uint8))
                font_ids.append(font)
        offsets.append(len(images))
    return GlyphBank(
        images=np.stack(images),
        offsets=np.asarray(offsets, dtype=np.int64),
        font_ids=np.asarray(font_ids, dtype=np.int16),
        codepoints=np.asarray([cp for cp, _ in classes], dtype=np.int32),
        splits={s: np.asarray(ids, dtype=np.int64) for s, ids in splits.items()},
        fonts=tuple(renderer.fonts),
    )
