"""Tests for alphaprune.engine.data: bundled images, folders, splits, crops and every DataError case."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alphaprune.engine.data import (
    BUNDLED_IMAGES,
    DEFAULT_VAL_IMAGES,
    DataError,
    FixedCropDataset,
    RandomCropDataset,
    load_bundled,
    load_folder,
    load_images,
    split_images,
    to_image,
    to_tensor,
)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _find(crop: np.ndarray, images: list[np.ndarray]) -> set[tuple[int, int, int, bool]]:
    """All (image, top, left, flipped) placements where ``crop`` occurs."""
    c = crop.shape[0]
    hits = set()
    for k, img in enumerate(images):
        for flip in (False, True):
            src = img[:, ::-1] if flip else img
            for top in range(img.shape[0] - c + 1):
                for left in range(img.shape[1] - c + 1):
                    if np.array_equal(src[top : top + c, left : left + c], crop):
                        hits.add((k, top, left, flip))
    return hits


# ------------------------------------------------------------------------ bundled images


@pytest.fixture(scope="module")
def bundled() -> dict[str, np.ndarray]:
    return load_bundled()


@pytest.mark.heavy
def test_bundled_names_and_arrays(bundled):
    assert len(BUNDLED_IMAGES) == 12 == len(set(BUNDLED_IMAGES))
    assert list(bundled) == list(BUNDLED_IMAGES)
    assert {"motorcycle_left", "motorcycle_right", "china", "flower"} <= set(bundled)
    for name, image in bundled.items():
        assert image.dtype == np.uint8, name
        assert image.ndim == 3 and image.shape[2] == 3, name
        assert min(image.shape[:2]) >= 256, name
        assert image.std() > 10, f"{name} looks blank"
    assert bundled["astronaut"].shape == (512, 512, 3)
    assert bundled["chelsea"].shape == (300, 451, 3)
    assert not np.array_equal(bundled["motorcycle_left"], bundled["motorcycle_right"])


@pytest.mark.heavy
def test_bundled_is_cached_and_read_only(bundled):
    again = load_bundled(["chelsea"])
    assert list(again) == ["chelsea"]
    assert again["chelsea"] is bundled["chelsea"]
    with pytest.raises(ValueError):
        again["chelsea"][0, 0, 0] = 1
    assert load_images("bundled")["coffee"] is bundled["coffee"]


def test_bundled_unknown_name():
    with pytest.raises(DataError, match="eagle.*available: astronaut"):
        load_bundled(["astronaut", "eagle"])


@pytest.mark.heavy
def test_default_split(bundled):
    train, val = split_images(bundled)
    assert DEFAULT_VAL_IMAGES == ("astronaut", "chelsea")
    assert list(val) == ["astronaut", "chelsea"]
    assert list(train) == [n for n in BUNDLED_IMAGES if n not in ("astronaut", "chelsea")]
    assert len(train) == 10


def test_split_errors():
    images = {"a": _rgb(4, 4), "b": _rgb(4, 4)}
    with pytest.raises(DataError, match=r"\['zzz'\].*available: a, b"):
        split_images(images, ["a", "zzz"])
    with pytest.raises(DataError, match="validation split is empty"):
        split_images(images, [])
    with pytest.raises(DataError, match="training split is empty"):
        split_images(images, ["a", "b"])
    train, val = split_images(images, "b")  # a bare string means one name
    assert list(train) == ["a"] and list(val) == ["b"]


# ------------------------------------------------------------------------ tensors


def test_to_tensor_and_back():
    image = _rgb(5, 7)
    image[0, 0] = (0, 128, 255)
    t = to_tensor(image)
    assert t.dtype == torch.float32 and t.shape == (3, 5, 7)
    assert t.min() >= 0 and t.max() <= 1
    assert torch.allclose(t[:, 0, 0], torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.equal(t[1], torch.from_numpy(image[:, :, 1]).float() / 255)
    np.testing.assert_array_equal(to_image(t), image)
    clamped = to_image(torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1))
    assert clamped.shape == (1, 1, 3) and clamped.dtype == np.uint8
    assert clamped.ravel().tolist() == [0, 128, 255]
    with pytest.raises(DataError, match="uint8"):
        to_tensor(image.astype(np.float32))
    with pytest.raises(DataError, match=r"\(3, H, W\)"):
        to_image(torch.zeros(1, 3, 4, 4))


# ------------------------------------------------------------------------ random crops


def test_random_crops_deterministic_and_valid():
    images = {"a": _rgb(20, 30, 1), "b": _rgb(16, 16, 2), "c": _rgb(25, 18, 3)}
    ds = RandomCropDataset(images, crop=8, samples_per_epoch=40, seed=3)
    assert len(ds) == 40
    first = [ds[i] for i in range(40)]
    for t in first:
        assert t.dtype == torch.float32 and t.shape == (3, 8, 8)
        assert 0 <= t.min() and t.max() <= 1
    # any order, another instance (a resumed run / another worker): same crops
    fresh = RandomCropDataset(images, crop=8, samples_per_epoch=40, seed=3)
    for i in reversed(range(40)):
        assert torch.equal(fresh[i], first[i])
    # the crop really is a window of one of the images, sometimes mirrored, from all images
    arrays = list(images.values())
    placements = [_find(to_image(t), arrays) for t in first]
    assert all(placements), "a crop is not a window of any image"
    assert {k for p in placements for (k, *_rest) in p} == {0, 1, 2}
    assert any(flip for p in placements for (*_r, flip) in p)
    assert any(not flip for p in placements for (*_r, flip) in p)
    # other epochs and seeds give other crops; going back to an epoch reproduces it
    ds.set_epoch(1)
    second = [ds[i] for i in range(40)]
    assert sum(torch.equal(a, b) for a, b in zip(first, second, strict=True)) < 10
    ds.set_epoch(0)
    assert all(torch.equal(ds[i], first[i]) for i in range(40))
    other_seed = RandomCropDataset(images, crop=8, samples_per_epoch=40, seed=4)
    assert sum(torch.equal(other_seed[i], first[i]) for i in range(40)) < 10
    with pytest.raises(IndexError):
        ds[40]


def test_random_crops_through_dataloader_workers_match():
    images = {"a": _rgb(20, 30, 1), "b": _rgb(16, 16, 2)}
    ds = RandomCropDataset(images, crop=8, samples_per_epoch=12, seed=0)
    ds.set_epoch(2)
    expected = torch.stack([ds[i] for i in range(12)])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), expected)


def test_random_crop_whole_image_uses_full_image():
    image = _rgb(6, 6)
    ds = RandomCropDataset({"x": image}, crop=6, samples_per_epoch=20)
    outs = {to_image(ds[i]).tobytes() for i in range(20)}
    assert outs == {image.tobytes(), image[:, ::-1].tobytes()}


# ------------------------------------------------------------------------ fixed crops


def test_fixed_crops_positions_and_names():
    a, b = _rgb(20, 31, 1), _rgb(17, 12, 2)
    ds = FixedCropDataset({"a": a, "b": b}, crop=10)
    assert len(ds) == 10
    assert ds.names == [f"{n}#{j}" for n in ("a", "b") for j in range(5)]
    expected_a = [
        a[5:15, 10:20],  # centre: (20-10)//2, (31-10)//2
        a[:10, :10],
        a[:10, -10:],
        a[-10:, :10],
        a[-10:, -10:],
    ]
    for j, want in enumerate(expected_a):
        np.testing.assert_array_equal(to_image(ds[j]), want)
    np.testing.assert_array_equal(to_image(ds[5]), b[3:13, 1:11])
    assert all(
        torch.equal(x, y) for x, y in zip(ds, FixedCropDataset({"a": a, "b": b}, 10), strict=True)
    )
    assert all(torch.equal(ds[i], ds[i]) for i in range(len(ds)))

    one = FixedCropDataset({"a": a, "b": b}, crop=10, crops_per_image=1)
    assert one.names == ["a#0", "b#0"]
    np.testing.assert_array_equal(to_image(one[0]), a[5:15, 10:20])


@pytest.mark.heavy
def test_fixed_crops_on_bundled_validation(bundled):
    _, val = split_images(bundled)
    ds = FixedCropDataset(val, crop=128, crops_per_image=3)
    assert ds.names == [
        "astronaut#0",
        "astronaut#1",
        "astronaut#2",
        "chelsea#0",
        "chelsea#1",
        "chelsea#2",
    ]
    centre = bundled["chelsea"][86:214, 161:289]  # (300-128)//2 = 86, (451-128)//2 = 161
    np.testing.assert_array_equal(to_image(ds[3]), centre)
    assert ds[0].shape == (3, 128, 128)


# ------------------------------------------------------------------------ folders


def test_load_folder_recursive(tmp_path):
    a, b, c, d = _rgb(8, 9, 1), _rgb(10, 6, 2), _rgb(7, 7, 3), _rgb(12, 12, 4)
    _save(tmp_path / "top.png", a)
    _save(tmp_path / "sub" / "deeper" / "B.PNG", b)
    _save(tmp_path / "sub" / "c.JPG", c, quality=95)
    _save(tmp_path / "other" / "d.jpeg", d, quality=95)
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "pic.gif").write_bytes(b"GIF89a")
    (tmp_path / "dir.png").mkdir()  # a folder with an image suffix is not a file

    images = load_folder(tmp_path)
    assert list(images) == ["other/d.jpeg", "sub/c.JPG", "sub/deeper/B.PNG", "top.png"]
    np.testing.assert_array_equal(images["top.png"], a)  # PNG is lossless
    np.testing.assert_array_equal(images["sub/deeper/B.PNG"], b)
    assert images["sub/c.JPG"].shape == (7, 7, 3) and images["sub/c.JPG"].dtype == np.uint8
    assert images["other/d.jpeg"].shape == (12, 12, 3)
    assert list(load_images(str(tmp_path))) == list(images)
    assert list(load_images(tmp_path)) == list(images)
    train, val = split_images(images, ["top.png"])
    assert list(val) == ["top.png"] and len(train) == 3


def test_folder_missing(tmp_path):
    missing = tmp_path / "nope_folder"
    with pytest.raises(DataError, match="nope_folder.*does not exist"):
        load_folder(missing)
    with pytest.raises(DataError, match="nope_folder"):
        load_images(missing)
    not_dir = tmp_path / "file_not_dir.png"
    _save(not_dir, _rgb(4, 4))
    with pytest.raises(DataError, match="file_not_dir.png.*not a directory"):
        load_folder(not_dir)


def test_folder_without_images(tmp_path):
    empty = tmp_path / "empty_set"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match=r"empty_set.*\*\.jpg, \*\.jpeg, \*\.png"):
        load_folder(empty)


def test_text_file_named_png(tmp_path):
    (tmp_path / "x.png").write_text("this is not a png")
    with pytest.raises(DataError, match=r"x\.png.*cannot read"):
        load_folder(tmp_path)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG", quality=90)
    (tmp_path / "good.jpg").write_bytes(buf.getvalue())
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg.*cannot read"):
        load_folder(tmp_path)


@pytest.mark.parametrize(
    ("filename", "make", "mode"),
    [
        ("gray.png", lambda: Image.fromarray(_rgb(8, 8)[:, :, 0], mode="L"), "L"),
        ("alpha.png", lambda: Image.fromarray(_rgb(8, 8)).convert("RGBA"), "RGBA"),
        ("cmyk.jpg", lambda: Image.fromarray(_rgb(8, 8)).convert("CMYK"), "CMYK"),
        ("deep.png", lambda: Image.fromarray(np.full((8, 8), 40000, np.uint16)), "I;16"),
        ("palette.png", lambda: Image.fromarray(_rgb(8, 8)).convert("P"), "P"),
    ],
)
def test_non_rgb_files(tmp_path, filename, make, mode):
    _save(tmp_path / "ok.png", _rgb(8, 8))
    make().save(tmp_path / filename)
    with pytest.raises(DataError) as info:
        load_folder(tmp_path)
    message = str(info.value)
    assert filename in message and f"'{mode}'" in message and "RGB" in message


# ------------------------------------------------------------------------ dataset arguments


@pytest.mark.parametrize(("h", "w"), [(12, 30), (30, 12)])
def test_crop_larger_than_image_names_it(h, w):
    images = {"big": _rgb(40, 40), "tiny_one": _rgb(h, w)}
    for make in (
        lambda: RandomCropDataset(images, crop=16, samples_per_epoch=4),
        lambda: FixedCropDataset(images, crop=16),
    ):
        with pytest.raises(DataError, match=rf"tiny_one.*{h}x{w}.*16x16"):
            make()


@pytest.mark.parametrize("crop", [0, -3, 2.5, True])
def test_bad_crop(crop):
    images = {"a": _rgb(8, 8)}
    with pytest.raises(DataError, match="crop must be an integer >= 1"):
        RandomCropDataset(images, crop=crop, samples_per_epoch=4)
    with pytest.raises(DataError, match="crop must be an integer >= 1"):
        FixedCropDataset(images, crop=crop)


@pytest.mark.parametrize("samples", [0, -1])
def test_bad_samples_per_epoch(samples):
    with pytest.raises(DataError, match="samples_per_epoch must be an integer >= 1"):
        RandomCropDataset({"a": _rgb(8, 8)}, crop=4, samples_per_epoch=samples)


def test_other_dataset_arguments():
    images = {"a": _rgb(8, 8)}
    for bad in (0, 6):
        with pytest.raises(DataError, match="crops_per_image"):
            FixedCropDataset(images, crop=4, crops_per_image=bad)
    with pytest.raises(DataError, match="empty"):
        RandomCropDataset({}, crop=4, samples_per_epoch=4)
    with pytest.raises(DataError, match="seed"):
        RandomCropDataset(images, crop=4, samples_per_epoch=4, seed=-1)
    with pytest.raises(DataError, match="epoch"):
        RandomCropDataset(images, crop=4, samples_per_epoch=4).set_epoch(-1)
    with pytest.raises(DataError, match="image 'gray'.*uint8.*\\(H, W, 3\\)"):
        RandomCropDataset({"gray": np.zeros((8, 8), np.uint8)}, crop=4, samples_per_epoch=4)


# ------------------------------------------------------------------------ train / val / test


def test_the_bundled_set_splits_7_2_3_with_the_motorcycle_views_together():
    from alphaprune.engine.config import DataConfig
    from alphaprune.engine.data import DEFAULT_TEST_IMAGES

    split = DataConfig().split_of(BUNDLED_IMAGES)
    assert (len(split.train), len(split.val), len(split.test)) == (7, 2, 3)
    assert set(split.test) == set(DEFAULT_TEST_IMAGES) and set(split.val) == set(DEFAULT_VAL_IMAGES)
    assert {"motorcycle_left", "motorcycle_right"} <= set(split.train)
    assert not (set(split.train) & set(split.val)) and not (set(split.train) & set(split.test))
    # the held-out list v2 (weeks 9/10) adds coffee: still disjoint from the default test set
    v2 = DataConfig(val_images=["astronaut", "chelsea", "coffee"]).split_of(BUNDLED_IMAGES)
    assert (len(v2.train), len(v2.val), len(v2.test)) == (6, 3, 3)
    # a validation image that is also a default test image stays validation
    mine = DataConfig(val_images=["rocket"]).split_of(BUNDLED_IMAGES)
    assert mine.val == ("rocket",) and set(mine.test) == {"china", "flower"}


def test_a_split_never_separates_the_two_views_of_one_scene():
    from alphaprune.engine.data import make_split

    with pytest.raises(DataError, match="motorcycle.*same scene"):
        make_split(BUNDLED_IMAGES, ["astronaut"], ["motorcycle_left"])
    with pytest.raises(DataError, match="both the validation and the test"):
        make_split(BUNDLED_IMAGES, ["astronaut", "coffee"], ["coffee"])
    with pytest.raises(DataError, match="training split is empty"):
        make_split(["a", "b"], ["a"], ["b"])


def test_a_folder_declares_its_split_by_glob_or_by_seeded_fractions():
    from alphaprune.engine.data import fraction_split, make_split

    names = [
        f"{group}/{i}.png" for group in ("cats", "dogs", "owls", "bats", "eels") for i in range(4)
    ]
    by_glob = make_split(names, ["owls/*"], ["bats/*", "eels/0.png"])
    assert by_glob.val == tuple(f"owls/{i}.png" for i in range(4))
    assert len(by_glob.test) == 5 and len(by_glob.train) == 11
    with pytest.raises(DataError, match=r"\['fish/\*'\] not found"):
        make_split(names, ["fish/*"])
    split = fraction_split(names, val=0.2, test=0.2, seed=3, by="folder")
    assert split == fraction_split(names, val=0.2, test=0.2, seed=3, by="folder")  # seeded
    folders = {
        part: {n.split("/")[0] for n in getattr(split, part)} for part in ("train", "val", "test")
    }
    assert len(folders["val"]) == 1 and len(folders["test"]) == 1  # whole folders held out
    assert not (folders["train"] & (folders["val"] | folders["test"]))
    assert fraction_split(names, val=0.2, test=0.2, seed=4, by="folder") != split
    by_image = fraction_split(names, val=0.25, test=0.25, seed=0)
    assert (len(by_image.val), len(by_image.test), len(by_image.train)) == (5, 5, 10)
    bundled_split = fraction_split(BUNDLED_IMAGES, val=0.3, test=0.3, seed=1)
    sides = [p for p in ("train", "val", "test") if "motorcycle_left" in getattr(bundled_split, p)]
    assert "motorcycle_right" in getattr(bundled_split, sides[0])


def test_the_data_config_takes_either_lists_or_fractions():
    from alphaprune.engine.config import ConfigError, config_from_dict

    cfg = config_from_dict(
        {"data": {"source": "/x", "split": {"val": 0.2, "test": 0.1, "seed": 2}}}
    )
    assert cfg.data.val_images == [] and cfg.data.test_images == []
    again = config_from_dict(cfg.to_dict())  # a round trip keeps it valid
    assert again.data.split == cfg.data.split
    with pytest.raises(ConfigError, match="either data.split"):
        config_from_dict({"data": {"val_images": ["a"], "split": {"val": 0.2}}})
    with pytest.raises(ConfigError, match="val \\+ test must be < 1"):
        config_from_dict({"data": {"split": {"val": 0.6, "test": 0.4}}})
    assert config_from_dict({"data": {"source": "/x"}}).data.test_patterns() == []


def test_training_never_sees_a_test_image_and_the_test_set_is_built_on_request():
    from alphaprune.engine.config import config_from_dict
    from alphaprune.engine.train import make_datasets

    cfg = config_from_dict({"data": {"crop": 32, "val_protocol": "grid"}})
    train, val = make_datasets(cfg)
    _, test = make_datasets(cfg, held_out="test")
    assert set(train.names).isdisjoint({"china", "flower", "rocket", "astronaut", "chelsea"})
    assert {name for name, _, _ in test.boxes} == {"china", "flower", "rocket"}
    assert {name for name, _, _ in val.boxes} == {"astronaut", "chelsea"}
    no_test = config_from_dict({"data": {"crop": 32, "test_images": []}})
    with pytest.raises(DataError, match="no test images"):
        make_datasets(no_test, held_out="test")
