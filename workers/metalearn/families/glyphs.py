"""``glyphs``: Omniglot-like 28x28 few-shot character classification, no download.

About 1,000 character classes rendered from the fonts bundled with matplotlib
(see :mod:`._glyph_bank`): each font that has a character is one "drawer" of
it, and every image drawn into an episode is augmented afresh with a small
random affine map (rotation, scale, shear, translation), a stroke-width change
(a blend towards a 3x3 dilation or erosion) and pixel noise, all vectorised
over the batch and drawn from the task's own generator. Classes are split
disjointly, 64/16/20 % for train/val/test, as Omniglot's characters are in
Vinyals et al. 2016. Images are ``[1, 28, 28]`` float32 in [0, 1], ink 1.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from pydantic import Field

from workers.metalearn.families import _glyph_bank
from workers.metalearn.families._base import BaseFamily, FamilyParams, cut_episode, episode_labels
from workers.metalearn.types import DataError, EpisodeSpec, Split, TaskBatch

_SIZE = _glyph_bank.SIZE
_PAD = 2  # zero border around each bank image, so bilinear taps never leave it
_SIDE = _SIZE + 2 * _PAD
# Output pixel centres relative to the image centre.
_GRID = np.arange(_SIZE, dtype=np.float32) - (_SIZE - 1) / 2
_CHUNK_TASKS = 32


class GlyphsParams(FamilyParams):
    max_classes: int | None = Field(
        None,
        ge=20,
        le=_glyph_bank.CLASS_COUNT,
        description="Use only this many classes (quick previews and tests).",
    )
    augment: bool = Field(True, description="Augment every image drawn (off: the plain renderings).")
    rotation_deg: float = Field(12.0, ge=0, le=45, description="Rotation: uniform in +-this many degrees.")
    scale: float = Field(0.1, ge=0, le=0.3, description="Scale: uniform in 1 +- this.")
    shear: float = Field(0.15, ge=0, le=0.5, description="Horizontal shear: uniform in +- this.")
    translate_px: float = Field(
        1.5, ge=0, le=4, description="Shift: uniform in +- this many pixels, each axis."
    )
    stroke: float = Field(
        0.5, ge=0, le=1, description="Stroke width: blend of up to this towards dilation/erosion."
    )
    noise: float = Field(
        0.03, ge=0, le=0.3, description="Pixel noise: zero-mean uniform, std uniform in [0, this]."
    )


class GlyphsFamily(BaseFamily):
    name = "glyphs"
    kind = "classification"
    input_shape = (1, _SIZE, _SIZE)
    params: GlyphsParams

    def __init__(self, params: GlyphsParams):
        self.params = params
        self.bank = _glyph_bank.load_bank(self.version, params.max_classes)
        padded = np.pad(self.bank.images, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
        self._flat = padded.reshape(-1)
        self._groups = {
            split: [self.bank.instances(int(c)) for c in classes]
            for split, classes in self.bank.splits.items()
        }

    def num_classes(self, split: Split) -> int:
        return len(self.bank.splits[split])

    def _check_data(self, episode: EpisodeSpec, split: Split) -> None:
        super()._check_data(episode, split)
        if self.params.augment:
            return  # instances are redrawn with fresh augmentation when a class runs short
        need = episode.shots + episode.query
        fewest = min(len(g) for g in self._groups[split])
        if need > fewest:
            raise DataError(
                "shots",
                f"without augmentation, {episode.shots} shots + {episode.query} query need {need} "
                f"distinct images per class; some {split} classes have only {fewest}",
            )

    def _build(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> TaskBatch:
        cut = episode.ways * episode.shots
        n_images = episode.ways * (episode.shots + episode.query)
        x = np.empty((len(task_ids), n_images, 1, _SIZE, _SIZE), dtype=np.float32)
        # Chunks of tasks keep the augmentation's temporaries small (600 tasks at once would not be).
        for start in range(0, len(task_ids), _CHUNK_TASKS):
            chunk = task_ids[start : start + _CHUNK_TASKS]
            x[start : start + len(chunk), :, 0] = self._images(split, episode, chunk).reshape(
                len(chunk), n_images, _SIZE, _SIZE
            )
        y_support, y_query = episode_labels(episode, len(task_ids))
        return TaskBatch(
            x_support=np.ascontiguousarray(x[:, :cut]),
            y_support=y_support,
            x_query=np.ascontiguousarray(x[:, cut:]),
            y_query=y_query,
            desc=None,
            task_ids=task_ids,
        )

    def _images(self, split: Split, episode: EpisodeSpec, task_ids: np.ndarray) -> np.ndarray:
        """The images of tasks ``task_ids``, support then query of each, as ``[M, 28, 28]``."""
        members, aug, noise = [], [], []
        n_images = episode.ways * (episode.shots + episode.query)
        for task_id in task_ids:
            rng = self.task_rng(split, task_id)
            support, query = cut_episode(rng, self._groups[split], episode)
            members.append(np.concatenate([support, query]))
            if self.params.augment:
                aug.append(rng.random((n_images, 7), dtype=np.float32))
                noise.append(rng.random((n_images, _SIZE, _SIZE), dtype=np.float32))
        flat = np.concatenate(members)
        if not self.params.augment:
            return self.bank.images[flat].astype(np.float32) / np.float32(255)
        return self._augment(flat, np.concatenate(aug), np.concatenate(noise))

    def _augment(self, members: np.ndarray, u: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Augmented copies of bank images ``members``: ``u`` is ``[M, 7]`` uniform [0, 1)
        draws (rotation, scale, shear, shift x, shift y, stroke, noise level), ``noise`` ``[M, 28, 28]``
        uniform [0, 1) (4x cheaper to draw than Gaussian). Returns float32 ``[M, 28, 28]``
        in [0, 1]."""
        p = self.params
        signed = 2 * u - 1  # uniform in [-1, 1)
        angle = np.float32(np.deg2rad(p.rotation_deg)) * signed[:, 0]
        scale = 1 + p.scale * signed[:, 1]
        shear = p.shear * signed[:, 2]
        shift = p.translate_px * signed[:, 3:5]
        # Forward map: out = R(angle) @ [[1, shear], [0, 1]] @ scale * src + shift, about the centre.
        # Sample the source at the inverse map of each output pixel.
        cos, sin = np.cos(angle), np.sin(angle)
        u_out = _GRID[None, None, :] - shift[:, 0, None, None]
        v_out = _GRID[None, :, None] - shift[:, 1, None, None]
        # Inverse of R: rotate by -angle; inverse of shear: x -= shear * y; then divide by scale.
        xr = (cos[:, None, None] * u_out + sin[:, None, None] * v_out) / scale[:, None, None]
        yr = (-sin[:, None, None] * u_out + cos[:, None, None] * v_out) / scale[:, None, None]
        xs = xr - shear[:, None, None] * yr
        centre = (_SIZE - 1) / 2 + _PAD
        images = self._bilinear(members, xs + centre, yr + centre)

        # Stroke width: blend towards a 3x3-cross dilation (thicker) or erosion (thinner).
        t = (p.stroke * signed[:, 5])[:, None, None]
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
        cross = (images, padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
        thick = functools.reduce(np.maximum, cross)
        thin = functools.reduce(np.minimum, cross)
        images += np.maximum(t, 0) * (thick - images) + np.maximum(-t, 0) * (thin - images)

        sigma = (p.noise * np.sqrt(12, dtype=np.float32)) * u[:, 6, None, None]
        images += sigma * (noise - np.float32(0.5))
        return np.clip(images, 0.0, 1.0, out=images)

    def _bilinear(self, members: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear samples of padded bank images ``members`` at padded coordinates ``x, y``."""
        x = np.clip(x, 0, _SIDE - 1.001, out=x)
        y = np.clip(y, 0, _SIDE - 1.001, out=y)
        x0 = np.floor(x)
        y0 = np.floor(y)
        fx = x - x0
        fy = y - y0
        base = (members * (_SIDE * _SIDE))[:, None, None] + (y0 * _SIDE + x0).astype(np.intp)
        flat = self._flat
        top_left, top_right = flat[base], flat[base + 1]
        bottom_left, bottom_right = flat[base + _SIDE], flat[base + _SIDE + 1]
        top = top_left + fx * (top_right.astype(np.float32) - top_left)
        bottom = bottom_left + fx * (bottom_right.astype(np.float32) - bottom_left)
        return (top + fy * (bottom - top)) * np.float32(1 / 255)

    def characters(self, split: Split) -> list[str]:
        """The characters (classes) of ``split``, in class order."""
        return [chr(int(self.bank.codepoints[c])) for c in self.bank.splits[split]]

    def describe(self) -> dict[str, Any]:
        counts = np.diff(self.bank.offsets)
        return {
            **super().describe(),
            "metric": "accuracy",
            "fonts": list(self.bank.fonts),
            "images": int(len(self.bank.images)),
            "images_per_class": {"min": int(counts.min()), "max": int(counts.max())},
        }
