"""Tests of jsnn.data: digits, augmentation ops, the batch pipelines and TFDS reading without TF."""

import io
import time

import numpy as np
import pytest

import jsnn.data as D
from jsnn.data import augment, digits
from jsnn.data import tfds as tfds_lib


@pytest.fixture(autouse=True)
def _fresh_cache():
    D.clear_cache()
    yield
    D.clear_cache()


def cfg(**kw):
    base = dict(name="digits", data_dir=None, batch_size=64)
    base.update(kw)
    return base


# ----------------------------------------------------------------------------- digits

def test_digits_shapes_range_and_sizes():
    x_tr, y_tr = digits.load("train")
    x_te, y_te = digits.load("test")
    assert x_tr.shape == (1437, 8, 8, 1) and x_te.shape == (360, 8, 8, 1)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    np.testing.assert_array_equal(x_tr * 16, np.round(x_tr * 16))  # 17 grey levels k/16
    assert set(np.unique(y_tr)) == set(range(10)) == set(np.unique(y_te))


def test_digits_split_is_fixed_partition_and_stratified():
    from sklearn.datasets import load_digits

    x_tr, y_tr = digits.load("train")
    x_te, _ = digits.load("test")
    digits._split.cache_clear()
    x_tr2, y_tr2 = digits.load("train")
    np.testing.assert_array_equal(x_tr, x_tr2)
    np.testing.assert_array_equal(y_tr, y_tr2)
    # The two splits partition the 1797 bundled images (as a multiset of rows).
    full = load_digits().images.reshape(1797, -1)
    ours = np.concatenate([x_tr, x_te]).reshape(1797, -1) * 16
    for a, b in zip(np.unique(full, axis=0, return_counts=True), np.unique(ours, axis=0, return_counts=True)):
        np.testing.assert_array_equal(a, b)
    # Stratified: every class's test share is within one example of 360 · p_k.
    _, y_te = digits.load("test")
    counts_all = np.bincount(load_digits().target, minlength=10)
    expected = 360 * counts_all / counts_all.sum()
    assert np.all(np.abs(np.bincount(y_te, minlength=10) - expected) <= 1.0)


def test_digits_info_statistics_and_readonly():
    meta = D.info("digits")
    x, _ = digits.load("train")
    assert meta.mean[0] == pytest.approx(float(x.mean()), rel=1e-6)
    assert meta.std[0] == pytest.approx(float(x.std()), rel=1e-6)
    assert (meta.num_classes, meta.image_shape, meta.train_size, meta.test_size) == (10, (8, 8, 1), 1437, 360)
    with pytest.raises(ValueError):
        x[0, 0, 0, 0] = 1.0  # cached arrays are read-only
    with pytest.raises(ValueError, match="split"):
        digits.load("validation")


def test_info_of_every_dataset_is_consistent():
    for name in D.IMAGE_DATASETS:
        meta = D.info(name)
        assert len(meta.mean) == len(meta.std) == meta.image_shape[-1]
        assert all(0 < s < 1 for s in meta.std) and all(0 < m < 1 for m in meta.mean)
    for name in D.EVENT_DATASETS:  # frames [T, H, W, 2]; tonic datasets normalize with mean 0, std 1
        meta = D.info(name)
        assert len(meta.mean) == len(meta.std) == meta.image_shape[-1] == 2 and meta.image_shape[0] == meta.frames
        assert all(0 < s <= 1 for s in meta.std) and all(0 <= m < 1 for m in meta.mean)
    assert set(D.DATASETS) == set(D.IMAGE_DATASETS) | set(D.EVENT_DATASETS)
    assert D.info("cifar10").image_shape == (32, 32, 3)
    assert D.info("imagenet2012", image_size=224).image_shape == (224, 224, 3)
    assert D.info("cifar100").num_classes == 100


# ----------------------------------------------------------------------------- augment

def _positive_images(b=64, h=6, w=5, c=2, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 1.0, (b, h, w, c)).astype(np.float32)


def test_random_crop_is_a_zero_filled_shift():
    x = _positive_images()
    pad = 2
    out = augment.random_crop(np.random.default_rng(1), x, pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for b in range(x.shape[0]):  # brute force over every admissible offset
        hits = [(oy, ox) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)
                if np.array_equal(out[b], padded[b, oy:oy + 6, ox:ox + 5])]
        assert len(hits) == 1, b
        seen.add(hits[0])
    assert len(seen) > 12  # offsets spread over the 25 possibilities
    np.testing.assert_array_equal(augment.random_crop(np.random.default_rng(1), x, 0), x)


def test_random_flip_twice_is_identity_and_mirrors_half():
    x = _positive_images(b=400)
    once = augment.random_flip(np.random.default_rng(5), x)
    twice = augment.random_flip(np.random.default_rng(5), once)
    np.testing.assert_array_equal(twice, x)
    mirrored = np.array([np.array_equal(once[b], x[b, :, ::-1]) for b in range(400)])
    same = np.array([np.array_equal(once[b], x[b]) for b in range(400)])
    assert np.all(mirrored ^ same)
    assert 150 < mirrored.sum() < 250


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_zeroes_one_clipped_square(size):
    h, w = 8, 7
    x = np.ones((300, h, w, 3), np.float32)
    out = augment.cutout(np.random.default_rng(2), x, size)
    clipped = 0
    for b in range(out.shape[0]):
        zero = out[b, :, :, 0] == 0
        assert np.array_equal(zero[..., None].repeat(3, -1), out[b] == 0)  # all channels alike
        rows, cols = np.nonzero(zero.any(1))[0], np.nonzero(zero.any(0))[0]
        assert rows.size and cols.size
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        assert zero.sum() == (r1 - r0) * (c1 - c0)  # one filled rectangle
        assert r1 - r0 <= size and c1 - c0 <= size
        # A side shorter than `size` only where the square was clipped by the border.
        if r1 - r0 < size:
            assert r0 == 0 or r1 == h
        if c1 - c0 < size:
            assert c0 == 0 or c1 == w
        clipped += (r1 - r0) * (c1 - c0) < size * size
    if size > 1:
        assert clipped > 0
    np.testing.assert_array_equal(augment.cutout(np.random.default_rng(2), x, 0), x)


def test_augment_keeps_input_and_dtype_and_validates():
    x = _positive_images()
    before = x.copy()
    out = augment.augment(np.random.default_rng(0), x, crop_padding=1, flip=True, cutout_size=2)
    np.testing.assert_array_equal(x, before)
    assert out.shape == x.shape and out.dtype == np.float32
    with pytest.raises(ValueError, match="pad"):
        augment.random_crop(np.random.default_rng(0), x, -1)
    with pytest.raises(ValueError, match="rank 4"):
        augment.random_flip(np.random.default_rng(0), x[0])


# ----------------------------------------------------------------------------- pipeline

def test_train_batches_deterministic_shapes_and_epoch_order():
    c = cfg(batch_size=100)
    a = D.train_batches(c, seed=7)
    b = D.train_batches(c, seed=7)
    first = [next(a) for _ in range(16)]
    for x in first:
        y = next(b)
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
        assert x["image"].shape == (100, 8, 8, 1) and x["image"].dtype == np.float32
        assert x["label"].dtype == np.int32
    assert D.steps_per_epoch(c) == 14
    ds = D.load(c, "train")
    perm0 = D.epoch_permutation(7, 0, 1437)
    img0, lab0 = ds.get(perm0[:1400])
    np.testing.assert_array_equal(np.concatenate([x["image"] for x in first[:14]]), img0)
    np.testing.assert_array_equal(np.concatenate([x["label"] for x in first[:14]]), lab0)
    np.testing.assert_array_equal(first[14]["label"], ds.labels[D.epoch_permutation(7, 1, 1437)[:100]])
    assert not np.array_equal(perm0, D.epoch_permutation(7, 1, 1437))
    other = next(D.train_batches(c, seed=8))
    assert not np.array_equal(other["label"], first[0]["label"])


def test_train_batches_resume_at_any_step_with_augmentation():
    c = cfg(batch_size=500, crop_padding=2, cutout=3)  # 2 steps per epoch: resumes cross epochs
    run = D.train_batches(c, seed=3)
    ref = [next(run) for _ in range(7)]
    for start in (1, 2, 3, 5):
        resumed = D.train_batches(c, seed=3, start_step=start)
        for k in range(start, 7):
            got = next(resumed)
            np.testing.assert_array_equal(got["image"], ref[k]["image"])
            np.testing.assert_array_equal(got["label"], ref[k]["label"])
    assert ref[0]["image"].min() == 0.0  # augmentation is on (zeros shifted/cut in)


def test_eval_batches_in_order_last_smaller_and_limit():
    c = cfg(eval_batch_size=100)
    batches = list(D.eval_batches(c))
    assert [len(b["label"]) for b in batches] == [100, 100, 100, 60]
    x, y = digits.load("test")
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), y)
    assert [len(b["label"]) for b in D.eval_batches(c, "train", batch_size=500, limit=1200)] == [500, 500, 200]
    assert sum(len(b["label"]) for b in D.eval_batches(cfg(test_limit=50))) == 50
    assert D.steps_per_epoch(cfg(batch_size=32, train_limit=100)) == 3


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("overrides, match", [
    (dict(name="mnist2"), "data.name.*known datasets: digits, mnist"),
    (dict(batch_size=0), "data.batch_size"),
    (dict(batch_size=2.5), "data.batch_size"),
    (dict(crop_padding=-1), "data.crop_padding"),
    (dict(cutout=20), "data.cutout"),
    (dict(flip=True), "data.flip"),
    (dict(flip="yes"), "data.flip"),
    (dict(name="cifar10", image_size=64), "data.image_size"),
    (dict(train_limit=0), "data.train_limit"),
])
def test_config_errors_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        D.read_config(cfg(**overrides))


def test_pipeline_argument_errors():
    with pytest.raises(ValueError, match="data.batch_size: 2000 exceeds"):
        D.train_batches(cfg(batch_size=2000), seed=0)
    with pytest.raises(ValueError, match="seed"):
        D.train_batches(cfg(), seed=-1)
    with pytest.raises(ValueError, match="split"):
        D.load(cfg(), "validation")


def test_check_batch_errors():
    x = np.zeros((4, 8, 8, 1), np.float32)
    y = np.zeros(4, np.int32)
    D.check_batch(x, y, 10, (8, 8, 1))
    bad = x.copy()
    bad[1, 2, 3, 0] = np.nan
    for args, match in [
        ((bad, y), "non-finite"),
        ((x[0], y), r"image: expected shape \[B, 8, 8, 1\]"),
        ((x[..., :1, :], y), "image: expected shape"),
        ((x.astype(np.uint8), y), "float dtype"),
        ((x + 2.0, y), r"\[0, 1\]"),
        ((x, np.array([0, 1, 2, 10])), r"label: values must lie in \[0, 10\)"),
        ((x, np.array([0, 1, -1, 2])), "label: values"),
        ((x, y[:3]), "label: expected shape"),
        ((x, y.astype(np.float32)), "integer"),
    ]:
        with pytest.raises(ValueError, match=match):
            D.check_batch(*args, 10, (8, 8, 1))


def test_load_rejects_bad_data(monkeypatch):
    x, y = (a.copy() for a in digits.load("train"))
    x[3, 1, 1, 0] = np.nan
    monkeypatch.setattr(digits, "load", lambda split: (x, y))
    with pytest.raises(ValueError, match="non-finite"):
        D.load(cfg(), "train")
    D.clear_cache()
    images = np.zeros((5, 28, 28, 1), np.uint8)
    monkeypatch.setattr(tfds_lib, "load_arrays", lambda *a, **k: (images, np.array([0, 1, 2, 3, 10])))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        D.load(cfg(name="mnist", data_dir="/nowhere"), "test")
    D.clear_cache()
    monkeypatch.setattr(tfds_lib, "load_arrays", lambda *a, **k: (images[:, :20], np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match="shape"):
        D.load(cfg(name="mnist", data_dir="/nowhere"), "test")


# ----------------------------------------------------------------------------- TFDS

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name, shape, flip", [("mnist", (28, 28, 1), False), ("cifar10", (32, 32, 3), True)])
def test_tfds_pipelines_with_mock_data(name, shape, flip):
    c = cfg(name=name, data_dir="/mock", batch_size=8, eval_batch_size=8, crop_padding=4, flip=flip, cutout=4)
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = D.load(c, "train")
        assert isinstance(ds, D.ArrayDataset) and len(ds) == 20 and ds.images.dtype == np.uint8
        it = D.train_batches(c, seed=0)
        batches = [next(it) for _ in range(5)]  # 2 steps per epoch: crosses epochs
        again = D.train_batches(c, seed=0, start_step=3)
        np.testing.assert_array_equal(next(again)["image"], batches[3]["image"])
        evals = list(D.eval_batches(c))
    for b in batches:
        assert b["image"].shape == (8, *shape) and b["image"].dtype == np.float32
        D.check_batch(b["image"], b["label"], 10, shape)
    assert [len(b["label"]) for b in evals] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in evals]), ds.images / np.float32(255))


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    """A data_dir with tiny 'mnist' and 'imagenet2012' prepared as array_record, without TF.

    Images are given to TFDS as PIL images / JPEG bytes (encoding numpy arrays needs TF).
    mnist image i is constant i and has label i % 10; imagenet image i is a solid colour
    (10·i, 20·i, 5·i) of size (20 + 7i)×(30 + 3i) with label 97·i.
    """
    from PIL import Image
    from tensorflow_datasets.core import registered

    root = tmp_path_factory.mktemp("tfds")
    empty = root / "empty"
    # Resolve the real builders first: modules imported inside skip_registration stay unregistered.
    mnist_cls = type(tfds.builder("mnist", data_dir=empty))
    imagenet_cls = type(tfds.builder("imagenet2012", data_dir=empty))

    def mnist_examples(n):
        for i in range(n):
            yield i, {"image": Image.fromarray(np.full((28, 28), i, np.uint8)), "label": i % 10}

    def imagenet_examples(n):
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.full((20 + 7 * i, 30 + 3 * i, 3), (10 * i, 20 * i, 5 * i), np.uint8)).save(
                buf, format="JPEG", quality=95)
            yield i, {"file_name": f"img{i}.JPEG", "image": buf.getvalue(), "label": 97 * i}

    with registered.skip_registration():
        class FakeMnist(mnist_cls):
            name = "mnist"

            def _split_generators(self, dl_manager):
                return {"train": mnist_examples(30), "test": mnist_examples(11)}

        class FakeImagenet(imagenet_cls):
            name = "imagenet2012"

            def _split_generators(self, dl_manager):
                return {"train": imagenet_examples(9), "validation": imagenet_examples(5)}

    data_dir = root / "data"
    for cls in (FakeMnist, FakeImagenet):
        cls(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_reads_prepared_array_record_without_tensorflow(prepared_dir):
    import sys

    ds = D.load(cfg(name="mnist", data_dir=str(prepared_dir)), "train")
    assert len(ds) == 30 and ds.images.shape == (30, 28, 28, 1)
    values = ds.images.reshape(30, -1)
    assert np.all(values == values[:, :1])  # each decoded image is constant
    np.testing.assert_array_equal(np.sort(values[:, 0]), np.arange(30))
    np.testing.assert_array_equal(ds.labels, values[:, 0] % 10)
    batch = next(D.eval_batches(cfg(name="mnist", data_dir=str(prepared_dir)), batch_size=4, limit=3))
    assert batch["image"].shape == (3, 28, 28, 1)
    assert "tensorflow" not in sys.modules


def test_imagenet_is_streamed_decoded_and_resized(prepared_dir):
    c = cfg(name="imagenet2012", data_dir=str(prepared_dir), batch_size=4, image_size=16, flip=True,
            crop_padding=2)
    ds = D.load(c, "train")
    assert isinstance(ds, D.StreamDataset) and len(ds) == 9
    x, y = ds.get(np.arange(9))
    assert x.shape == (9, 16, 16, 3) and x.dtype == np.float32 and y.dtype == np.int32
    i = y // 97
    expected = np.stack([10 * i, 20 * i, 5 * i], -1)[:, None, None, :] / 255.0
    np.testing.assert_allclose(x, np.broadcast_to(expected, x.shape), atol=4 / 255)
    assert len(D.load(c, "test")) == 5  # 'test' reads ImageNet's labelled 'validation' split
    b = next(D.train_batches(c, seed=1, start_step=3))
    assert b["image"].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(b["image"], next(D.train_batches(c, seed=1, start_step=3))["image"])


def test_decode_resize_keeps_aspect_and_centre():
    from PIL import Image

    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 200  # the central 40×40 square: what a centre crop keeps
    for arr in (img, img.transpose(1, 0, 2)):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        out = tfds_lib.decode_resize(buf.getvalue(), 10).astype(int)
        assert out.shape == (10, 10, 3)
        assert np.all(np.abs(out[2:8, 2:8] - 200) <= 3)
        # Squashing 80→10 would put the black margins in the first/last rows or columns;
        # centre cropping leaves only bicubic ringing of the border there.
        assert out.min() > 150


def test_missing_data_fails_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        D.load(cfg(name="cifar10", data_dir=str(tmp_path)), "train")
    assert time.perf_counter() - start < 30  # no download attempt, no network wait
    msg = str(err.value)
    assert "not prepared" in msg and str(tmp_path) in msg
    assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in msg
    assert "download_and_prepare()" in msg
    assert not (tmp_path / "cifar10").exists() or not any((tmp_path / "cifar10").rglob("*.array_record*"))
    with pytest.raises(FileNotFoundError, match="--manual_dir"):
        D.load(cfg(name="imagenet2012", data_dir=str(tmp_path)), "test")


def test_tfrecord_prepared_data_is_refused_with_conversion_hint(prepared_dir, tmp_path):
    import shutil

    shutil.copytree(prepared_dir / "mnist", tmp_path / "mnist")
    (info_json,) = (tmp_path / "mnist").glob("*/dataset_info.json")
    info_json.write_text(info_json.read_text().replace('"array_record"', '"tfrecord"'))
    with pytest.raises(ValueError, match="tfrecord.*needs TensorFlow") as err:
        D.load(cfg(name="mnist", data_dir=str(tmp_path)), "train")
    assert "convert_format" in str(err.value)
