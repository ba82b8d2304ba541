"""Images for training and validating the autoencoders: loading, splitting and cropping.

Two sources, both offline:

* ``"bundled"``: twelve real RGB photographs shipped inside installed packages (no download).
  From ``skimage.data``: astronaut, chelsea, coffee, rocket, hubble_deep_field, retina,
  immunohistochemistry, colorwheel and the two views of ``stereo_motorcycle()`` (named
  motorcycle_left / motorcycle_right); from ``sklearn.datasets.load_sample_images()``: china,
  flower. The default split (7 / 2 / 3) validates on :data:`DEFAULT_VAL_IMAGES` (astronaut,
  chelsea), tests on :data:`DEFAULT_TEST_IMAGES` (china, flower, rocket) and trains on the other
  seven; the two motorcycle views always stay on one side.
* a folder: every ``*.jpg`` / ``*.jpeg`` / ``*.png`` below it (recursive, case-insensitive), keyed
  by its path relative to the folder in posix form (``"cats/a.png"``), sorted by key. It declares
  its split by names or globs (``val_images``, ``test_images``) or by seeded fractions.

:func:`make_split` splits by image (never by crop): tune on validation, report on test.

Images are ``uint8`` arrays of shape ``(H, W, 3)``; models see ``float32`` tensors ``(3, H, W)`` in
``[0, 1]`` (:func:`to_tensor` / :func:`to_image`). :class:`RandomCropDataset` draws training crops
whose position depends only on ``(seed, epoch, index)``, so runs are reproducible, resumable and
independent of DataLoader workers; :class:`FixedCropDataset` gives fixed validation crops.
Every problem with the data raises :class:`DataError` naming the file or image at fault.
"""

from __future__ import annotations

import fnmatch
import functools
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from alphaprune.errors import DataError

__all__ = [
    "BUNDLED_GROUPS",
    "BUNDLED_IMAGES",
    "DEFAULT_TEST_IMAGES",
    "DEFAULT_VAL_IMAGES",
    "IMAGE_EXTENSIONS",
    "DataError",
    "FixedCropDataset",
    "GridCropDataset",
    "HELD_OUT",
    "VAL_PROTOCOLS",
    "RandomCropDataset",
    "Split",
    "fraction_split",
    "image_group",
    "image_names",
    "make_split",
    "select_names",
    "load_bundled",
    "load_folder",
    "load_images",
    "split_images",
    "to_image",
    "to_tensor",
    "validation_dataset",
]


DEFAULT_VAL_IMAGES: tuple[str, ...] = ("astronaut", "chelsea")
#: The bundled test split: three photographs that no run trains on and no choice is tuned on
#: (with :data:`DEFAULT_VAL_IMAGES` a 7 / 2 / 3 split of the twelve bundled images). Disjoint from
#: both held-out lists below, so configs that validate on either keep working.
DEFAULT_TEST_IMAGES: tuple[str, ...] = ("china", "flower", "rocket")
#: Named held-out lists of the bundled set. "v1": today's default; "v2" adds coffee (a third
#: photograph of a different kind: close-up, food, strong colour). The two motorcycle views show
#: the same scene, so they are never split between training and validation.
HELD_OUT: dict[str, tuple[str, ...]] = {
    "v1": DEFAULT_VAL_IMAGES,
    "v2": (*DEFAULT_VAL_IMAGES, "coffee"),
}
#: Bundled images that show the same scene: every split keeps such a group on one side.
BUNDLED_GROUPS: dict[str, str] = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------------------------------------
# bundled images
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _stereo_motorcycle() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data as skdata

    left, right, _disparity = skdata.stereo_motorcycle()
    return left, right


@functools.lru_cache(maxsize=1)
def _sklearn_samples() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    return {Path(f).stem: img for f, img in zip(bunch.filenames, bunch.images, strict=True)}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data as skdata

        return getattr(skdata, name)()

    return load


#: RGB photographs of ``skimage.data`` that ship inside the package (no download).
_SKIMAGE_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
)
_BUNDLED_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    **{name: _skimage(name) for name in _SKIMAGE_NAMES},
    "motorcycle_left": lambda: _stereo_motorcycle()[0],
    "motorcycle_right": lambda: _stereo_motorcycle()[1],
    "china": lambda: _sklearn_samples()["china"],
    "flower": lambda: _sklearn_samples()["flower"],
}


#: The bundled default data set, in a fixed order (the order of the loaders above).
BUNDLED_IMAGES: tuple[str, ...] = tuple(_BUNDLED_LOADERS)


@functools.cache  # an unbounded functools.lru_cache
def _decode_bundled(name: str) -> np.ndarray:
    """Decode one bundled image once; the cached array is read-only so callers cannot corrupt it."""
    image = np.ascontiguousarray(_BUNDLED_LOADERS[name](), dtype=np.uint8)
    _check_image(image, f"bundled image '{name}'")
    image.setflags(write=False)
    return image


def load_bundled(names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The bundled photographs ``{name: uint8 (H, W, 3)}``, all of :data:`BUNDLED_IMAGES` by default.

    Decoding is cached, so repeated calls are cheap; the returned arrays are shared and read-only
    (copy one before modifying it).
    """
    selected = BUNDLED_IMAGES if names is None else tuple(names)
    unknown = [n for n in selected if n not in _BUNDLED_LOADERS]
    if unknown:
        raise DataError(
            f"unknown bundled image(s) {unknown}; available: {', '.join(BUNDLED_IMAGES)}"
        )
    return {name: _decode_bundled(name) for name in selected}


# ---------------------------------------------------------------------------------------------
# image files
# ---------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    """Read one JPEG/PNG file as uint8 (H, W, 3); EXIF orientation is applied."""
    try:
        with Image.open(path) as img:
            img.load()  # inside the try: truncated files fail here, not later
            mode = img.mode
            if mode == "RGB":
                img = ImageOps.exif_transpose(img)
                array = np.asarray(img, dtype=np.uint8)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if mode != "RGB":
        raise DataError(
            f"{path}: image mode is '{mode}' but RGB (8 bits per channel, 3 channels) is required; "
            "convert it first, e.g. Image.open(p).convert('RGB').save(p)"
        )
    return np.ascontiguousarray(array)


def _image_files(path: str | Path) -> dict[str, Path]:
    """The image files below ``path`` by key (posix path relative to it), sorted by key."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"image folder '{root}' does not exist")
    if not root.is_dir():
        raise DataError(f"image folder '{root}' is not a directory")
    files = {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    }
    if not files:
        raise DataError(
            f"image folder '{root}' has no image files (searched recursively for "
            f"{', '.join('*' + e for e in IMAGE_EXTENSIONS)}, case-insensitive)"
        )
    return {key: files[key] for key in sorted(files)}


def load_folder(path: str | Path) -> dict[str, np.ndarray]:
    """Every ``.jpg``/``.jpeg``/``.png`` file below ``path`` (recursive, case-insensitive).

    Keys are the paths relative to ``path`` in posix form, sorted; values are uint8 (H, W, 3).
    Raises :class:`DataError` if the folder is missing or holds no such file, or if a file is
    unreadable or not 8-bit RGB.
    """
    return {key: _read_rgb(file) for key, file in _image_files(path).items()}


def image_names(source: str | Path = "bundled") -> list[str]:
    """The names :func:`load_images` would give, without decoding any image."""
    if isinstance(source, str) and source == "bundled":
        return list(BUNDLED_IMAGES)
    return list(_image_files(source))


def load_images(source: str | Path = "bundled") -> dict[str, np.ndarray]:
    """Images from ``"bundled"`` (:func:`load_bundled`) or from a folder (:func:`load_folder`).

    Only the string ``"bundled"`` selects the bundled set; pass ``Path("bundled")`` (or
    ``"./bundled"``) for a folder of that name.
    """
    if isinstance(source, str) and source == "bundled":
        return load_bundled()
    return load_folder(source)


@dataclass(frozen=True)
class Split:
    """Image names of the training, validation and test splits (disjoint; test may be empty)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()


def select_names(names: Sequence[str], patterns: Sequence[str], what: str) -> list[str]:
    """The ``names`` matching any of ``patterns`` (an exact name, or a glob such as
    ``"val/*.png"``), in the order of ``names``; a :class:`DataError` for a pattern that
    matches nothing (listing the available names)."""
    if isinstance(patterns, str):  # a bare string would be split into characters
        patterns = (patterns,)
    unmatched = [p for p in patterns if p not in names and not fnmatch.filter(names, p)]
    if unmatched:
        shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
        raise DataError(f"{what} {unmatched} not found; available: {shown or '(none)'}")
    return [n for n in names if any(n == p or fnmatch.fnmatchcase(n, p) for p in patterns)]


def image_group(name: str, by: str = "image") -> str:
    """The group an image belongs to for splitting: the two bundled motorcycle views are one
    group; ``by="folder"`` groups a folder's files by their sub-folder."""
    if by == "folder" and "/" in name:
        return name.rsplit("/", 1)[0]
    return BUNDLED_GROUPS.get(name, name)


def _check_groups(split: Split, by: str) -> None:
    side: dict[str, str] = {}
    for part in ("train", "val", "test"):
        for name in getattr(split, part):
            group = image_group(name, by)
            if side.setdefault(group, part) != part:
                raise DataError(
                    f"images of '{group}' show the same scene but are split between "
                    f"{side[group]} and {part}; put them all on one side"
                )


def fraction_split(
    names: Sequence[str], val: float, test: float = 0.0, seed: int = 0, by: str = "image"
) -> Split:
    """A seeded random split of ``names`` by group (:func:`image_group`): about ``val`` and
    ``test`` of the groups held out (at least one group each when the fraction is > 0)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(image_group(name, by), []).append(name)
    order = list(groups)
    np.random.default_rng(seed).shuffle(order)
    n_val = max(1, round(val * len(order)))
    n_test = max(1, round(test * len(order))) if test > 0 else 0
    if n_val + n_test >= len(order):
        raise DataError(
            f"split: {len(order)} image group(s) cannot give {n_val} for validation, {n_test} "
            "for test and at least one for training"
        )
    val_groups = set(order[:n_val])
    test_groups = set(order[n_val : n_val + n_test])
    pick = lambda chosen: tuple(n for n in names if image_group(n, by) in chosen)  # noqa: E731
    held = val_groups | test_groups
    train = tuple(n for n in names if image_group(n, by) not in held)
    return Split(train, pick(val_groups), pick(test_groups))


def make_split(
    names: Sequence[str],
    val: Sequence[str] = DEFAULT_VAL_IMAGES,
    test: Sequence[str] = (),
    fractions: Mapping[str, Any] | None = None,
) -> Split:
    """The train / validation / test split of ``names``: by name or glob (``val``, ``test``),
    or by seeded fractions (``{"val": 0.2, "test": 0.2, "seed": 0, "by": "image"}``). The
    motorcycle views (and, with ``by: folder``, the files of one sub-folder) stay on one side.
    A :class:`DataError` names an unknown image, an overlap or an empty split."""
    names = list(names)
    by = "image"
    if fractions is not None:
        by = fractions.get("by", "image")
        split = fraction_split(
            names, fractions["val"], fractions.get("test", 0.0), fractions.get("seed", 0), by
        )
    else:
        val_names = select_names(names, val, "validation image(s)")
        test_names = select_names(names, test, "test image(s)") if test else []
        both = sorted(set(val_names) & set(test_names))
        if both:
            raise DataError(f"image(s) {both} are in both the validation and the test split")
        held = set(val_names) | set(test_names)
        split = Split(tuple(n for n in names if n not in held), tuple(val_names), tuple(test_names))
    if not split.val:
        raise DataError("validation split is empty: give at least one name in val_names")
    if not split.train:
        raise DataError(
            f"training split is empty: all {len(names)} image(s) are held out "
            f"(validation {list(split.val)}, test {list(split.test)})"
        )
    _check_groups(split, by)
    return split


def split_images(
    images: dict[str, np.ndarray],
    val_names: Sequence[str] = DEFAULT_VAL_IMAGES,
    test_names: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split ``images`` into ``(train, val)`` by name (see :func:`make_split`): ``val_names`` go to
    validation, ``test_names`` to neither, the rest train. Both keep the order of ``images``."""
    split = make_split(list(images), val_names, test_names)
    return {k: images[k] for k in split.train}, {k: images[k] for k in split.val}


# ---------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray):
        raise DataError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(
            f"{what}: expected a uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}"
        )


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` image -> float32 ``(3, H, W)`` tensor in ``[0, 1]``."""
    _check_image(image, "to_tensor")
    # uint8 transpose first (cheap, also for flipped views), then one float pass; plain numpy keeps
    # torch's intra-op thread pool out of the per-sample path
    chw = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float ``(3, H, W)`` tensor -> uint8 ``(H, W, 3)`` image; values are clamped to ``[0, 1]``."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise DataError(
            f"to_image: expected a tensor of shape (3, H, W), got {tuple(tensor.shape)}"
        )
    scaled = tensor.detach().to("cpu", torch.float32).clamp(0.0, 1.0).mul(255.0).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _checked_images(images: dict[str, np.ndarray], crop: int) -> tuple[list[str], list[np.ndarray]]:
    """Validate every image and that ``crop`` fits inside it; return names and arrays."""
    if not images:
        raise DataError("no images given: the image dict is empty")
    for name, image in images.items():
        _check_image(image, f"image '{name}'")
        height, width = image.shape[:2]
        if crop > height or crop > width:
            raise DataError(
                f"image '{name}' is {height}x{width} (HxW), smaller than the crop {crop}x{crop}; "
                "use a smaller crop or drop the image"
            )
    return list(images), list(images.values())


class RandomCropDataset(Dataset):
    """Random square crops for training: ``samples_per_epoch`` items per epoch.

    Item ``i`` of epoch ``e`` picks an image uniformly, a uniform crop position and a horizontal
    flip with probability 1/2, all from a generator seeded with ``(seed, e, i)``. The result does
    not depend on access order, worker process or global RNG state, so training is reproducible and
    resumable. Call :meth:`set_epoch` before creating the DataLoader iterator of each epoch (with
    ``persistent_workers=True`` the workers keep the epoch they were started with).
    """

    def __init__(
        self, images: dict[str, np.ndarray], crop: int, samples_per_epoch: int, seed: int = 0
    ) -> None:
        self.crop = _positive_int(crop, "crop")
        self.samples_per_epoch = _positive_int(samples_per_epoch, "samples_per_epoch")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise DataError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.names, self._images = _checked_images(images, self.crop)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops ``__getitem__`` returns."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise DataError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _params(self, i: int) -> tuple[int, int, int, bool]:
        """(image index, top, left, flip) of item ``i`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = int(rng.integers(len(self._images)))
        height, width = self._images[k].shape[:2]
        top = int(rng.integers(height - self.crop + 1))
        left = int(rng.integers(width - self.crop + 1))
        flip = bool(rng.random() < 0.5)
        return k, top, left, flip

    def __getitem__(self, i: int) -> torch.Tensor:
        i = int(i)
        if not 0 <= i < self.samples_per_epoch:
            raise IndexError(f"index {i} out of range for {self.samples_per_epoch} samples")
        k, top, left, flip = self._params(i)
        patch = self._images[k][top : top + self.crop, left : left + self.crop]
        if flip:
            patch = patch[:, ::-1]
        return to_tensor(patch)


class FixedCropDataset(Dataset):
    """Fixed square crops for validation: ``crops_per_image`` per image, image by image.

    Crop positions, in order: 0 centre (top ``(H - crop) // 2``, left ``(W - crop) // 2``),
    1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right. :attr:`names` labels each item
    ``"<image>#<k>"`` for figures.
    """

    def __init__(self, images: dict[str, np.ndarray], crop: int, crops_per_image: int = 5) -> None:
        self.crop = _positive_int(crop, "crop")
        per_image = _positive_int(crops_per_image, "crops_per_image")
        if per_image > 5:
            raise DataError(f"crops_per_image must be in 1..5, got {crops_per_image!r}")
        self.crops_per_image = per_image
        image_names, self._images = _checked_images(images, self.crop)
        self._boxes: list[tuple[int, int, int]] = []  # (image index, top, left)
        self.names: list[str] = []
        self.image_shapes = {
            n: im.shape[:2] for n, im in zip(image_names, self._images, strict=True)
        }
        for k, (name, image) in enumerate(zip(image_names, self._images, strict=True)):
            bottom, right = image.shape[0] - self.crop, image.shape[1] - self.crop
            corners = [(bottom // 2, right // 2), (0, 0), (0, right), (bottom, 0), (bottom, right)]
            for j, (top, left) in enumerate(corners[:per_image]):
                self._boxes.append((k, top, left))
                self.names.append(f"{name}#{j}")

    def __len__(self) -> int:
        return len(self._boxes)

    @property
    def boxes(self) -> list[tuple[str, int, int]]:
        """``(image name, top, left)`` of every item, in order (for per-image scores)."""
        names = list(self.image_shapes)
        return [(names[k], top, left) for k, top, left in self._boxes]

    def __getitem__(self, i: int) -> torch.Tensor:
        i = int(i)
        if not 0 <= i < len(self._boxes):
            raise IndexError(f"index {i} out of range for {len(self._boxes)} crops")
        k, top, left = self._boxes[i]
        return to_tensor(self._images[k][top : top + self.crop, left : left + self.crop])


def _tile_starts(length: int, crop: int) -> list[int]:
    """Evenly spaced starts of the fewest ``crop``-long tiles that cover ``0 .. length``."""
    count = -(-length // crop)  # ceil
    if count == 1:
        return [0]
    return sorted({round(i * (length - crop) / (count - 1)) for i in range(count)})


class GridCropDataset(Dataset):
    """Validation tiles covering every pixel of each image: ``ceil(H/crop) × ceil(W/crop)`` crops
    per image, evenly spaced, the last row and column flush with the border (so neighbouring
    tiles overlap by less than one crop). :attr:`names` labels items ``"<image>@<top>,<left>"``,
    :attr:`image_of` gives each item's image name (for per-image statistics).
    """

    def __init__(self, images: dict[str, np.ndarray], crop: int) -> None:
        self.crop = _positive_int(crop, "crop")
        image_names, self._images = _checked_images(images, self.crop)
        self._boxes: list[tuple[int, int, int]] = []
        self.names: list[str] = []
        self.image_of: list[str] = []
        self.image_shapes = {
            n: im.shape[:2] for n, im in zip(image_names, self._images, strict=True)
        }
        for k, (name, image) in enumerate(zip(image_names, self._images, strict=True)):
            for top in _tile_starts(image.shape[0], self.crop):
                for left in _tile_starts(image.shape[1], self.crop):
                    self._boxes.append((k, top, left))
                    self.names.append(f"{name}@{top},{left}")
                    self.image_of.append(name)

    def __len__(self) -> int:
        return len(self._boxes)

    @property
    def boxes(self) -> list[tuple[str, int, int]]:
        """``(image name, top, left)`` of every item, in order (for per-image scores)."""
        names = list(self.image_shapes)
        return [(names[k], top, left) for k, top, left in self._boxes]

    def __getitem__(self, i: int) -> torch.Tensor:
        i = int(i)
        if not 0 <= i < len(self._boxes):
            raise IndexError(f"index {i} out of range for {len(self._boxes)} tiles")
        k, top, left = self._boxes[i]
        return to_tensor(self._images[k][top : top + self.crop, left : left + self.crop])


#: Validation protocols by name (``data.val_protocol``).
VAL_PROTOCOLS: tuple[str, ...] = ("corners", "grid")


def validation_dataset(
    images: dict[str, np.ndarray], crop: int, protocol: str = "corners", val_crops: int = 5
) -> FixedCropDataset | GridCropDataset:
    """The validation crops of the held-out ``images`` under a named protocol.

    ``"corners"``: ``val_crops`` (1–5) fixed crops per image — centre, then the corners (the
    original protocol: few crops, a small part of each image). ``"grid"``: tiles covering every
    pixel of every held-out image (:class:`GridCropDataset`; ``val_crops`` is ignored).
    """
    if protocol == "corners":
        return FixedCropDataset(images, crop, crops_per_image=val_crops)
    if protocol == "grid":
        return GridCropDataset(images, crop)
    raise DataError(
        f"unknown validation protocol {protocol!r}; choose one of {list(VAL_PROTOCOLS)}"
    )
