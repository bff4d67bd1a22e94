"""Event data: frame binning vs brute-force loops, event digits, tonic datasets on disk, the frames encoder."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jsnn.data as D
from jsnn import encoding, models
from jsnn.data import event_digits, events
from jsnn.layers import Encoder, EncoderConfig


@pytest.fixture(autouse=True)
def _fresh_cache():
    D.clear_cache()
    yield
    D.clear_cache()


def stream(n=60, w=5, h=4, t_max=1000, seed=0, dtype=events.EVENT_DTYPE):
    """A tiny random event stream in tonic's format, sorted by time (with repeated timestamps)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype)
    ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def brute_frames(ev, w, h, T, m, slices):
    """Our own reference: count events of each (slice, y, x, p), clip at m, divide by m."""
    out = np.zeros((T, h, w, 2), np.float64)
    for k, members in enumerate(slices[:T]):
        for i in members:
            e = ev[i]
            out[k, int(e["y"]), int(e["x"]), int(e["p"] > 0)] += 1
    return (np.minimum(out, m) / m).astype(np.float32)


def slices_for(ev, cfg):
    """Event indices of each frame, straight from the binning definitions in jsnn.data.events."""
    t, n, T = ev["t"].astype(np.int64), len(ev), cfg.frames
    if cfg.binning == "time_bins":
        window = (t[-1] - t[0]) // T
        return [[i for i in range(n) if t[0] + k * window <= t[i] < t[0] + (k + 1) * window] for k in range(T)]
    if cfg.binning == "event_bins":
        per = n // T
        return [list(range(k * per, (k + 1) * per)) for k in range(T)]
    if cfg.binning == "time_window":
        wdw, out, k = cfg.time_window, [], 0
        while t[0] + k * wdw <= t[-1]:
            out.append([i for i in range(n) if t[0] + k * wdw <= t[i] < t[0] + (k + 1) * wdw])
            k += 1
        return out
    c = cfg.event_count
    return [list(range(s, min(s + c, n))) for s in range(0, n, c)]


@pytest.mark.parametrize("options", [
    dict(binning="time_bins", frames=4, max_count=1),
    dict(binning="time_bins", frames=3, max_count=3),
    dict(binning="event_bins", frames=5, max_count=2),
    dict(binning="time_window", frames=6, time_window=130.0, max_count=2),  # 8 windows: the first 6
    dict(binning="time_window", frames=12, time_window=130.0, max_count=1),  # zero frames after the end
    dict(binning="event_count", frames=4, event_count=17, max_count=4),  # incomplete last slice kept
])
def test_every_binning_matches_a_brute_force_loop(options):
    w, h = 5, 4
    ev = stream(w=w, h=h)
    cfg = events.read_config(options)
    got = events.to_frames(ev, (w, h), cfg)
    want = brute_frames(ev, w, h, cfg.frames, cfg.max_count, slices_for(ev, cfg))
    assert got.shape == (cfg.frames, h, w, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    q = got * cfg.max_count
    np.testing.assert_array_equal(q, np.round(q))  # multiples of the quantum 1/m


def test_channel_0_is_off_channel_1_is_on_for_any_polarity_dtype():
    for dtype in (events.EVENT_DTYPE,  # N-MNIST, then DVS128 Gesture's and CIFAR10-DVS's tonic dtypes
                  np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]),
                  np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])):
        ev = np.zeros(2, dtype)
        ev["t"] = [0, 10]
        ev["p"] = [True, False]
        f = events.to_frames(ev, (1, 1), events.read_config({"frames": 1, "binning": "event_bins"}))
        assert f[0, 0, 0].tolist() == [1.0, 1.0]
        ev["p"] = [True, True]
        f = events.to_frames(ev, (1, 1), events.read_config({"frames": 1, "binning": "event_bins"}))
        assert f[0, 0, 0].tolist() == [0.0, 1.0]


def test_downsampling_matches_floor_of_scaled_coordinates():
    w = h = 16
    ev = stream(n=80, w=w, h=h, seed=3)
    cfg = events.read_config({"frames": 2, "size": 6, "binning": "event_bins", "max_count": 8})
    got = events.to_frames(ev, (w, h), cfg)
    small = ev.copy()
    small["x"] = np.floor(ev["x"] * 6 / w)
    small["y"] = np.floor(ev["y"] * 6 / h)
    want = brute_frames(small, 6, 6, 2, 8, slices_for(small, cfg))
    assert got.shape == (2, 6, 6, 2)
    np.testing.assert_array_equal(got, want)


def test_denoising_matches_a_brute_force_neighbour_filter():
    ev = stream(n=50, w=6, h=6, t_max=20000, seed=5)
    f = 2500.0
    width, height = int(ev["x"].max()) + 1, int(ev["y"].max()) + 1
    keep = []
    for i, e in enumerate(ev):  # kept when a 4-neighbour fired within f µs before (or none fired yet and t < f)
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        ok = False
        for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
            if 0 <= nx < width and 0 <= ny < height:
                before = [int(ev[j]["t"]) for j in range(i) if (int(ev[j]["x"]), int(ev[j]["y"])) == (nx, ny)]
                last = before[-1] + f if before else f
                ok |= last > t
        keep.append(ok)
    cfg = events.read_config({"frames": 3, "denoise_us": f, "binning": "event_bins", "max_count": 5})
    kept = ev[np.array(keep)]
    assert 0 < len(kept) < len(ev)
    np.testing.assert_array_equal(events.to_frames(ev, (6, 6), cfg),
                                  brute_frames(kept, 6, 6, 3, 5, slices_for(kept, cfg)))


def test_empty_stream_gives_zero_frames():
    f = events.to_frames(np.zeros(0, events.EVENT_DTYPE), (3, 2), events.read_config({"frames": 2}))
    assert f.shape == (2, 2, 3, 2) and not f.any()


@pytest.mark.parametrize("options,match", [
    ({"frames": 0}, "data.events.frames"),
    ({"binning": "time"}, "data.events.binning"),
    ({"binning": "event_count"}, "data.events.event_count"),
    ({"max_count": 0}, "data.events.max_count"),
    ({"denoise_us": float("nan")}, "data.events.denoise_us"),
    ({"framez": 3}, "data.events.framez: unknown field"),
])
def test_bad_event_options_are_one_line_errors(options, match):
    with pytest.raises(ValueError, match=match) as e:
        D.read_config({"name": "event_digits", "events": options})
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- event digits


def test_event_digits_follow_the_dvs_rule():
    """After the saccades the image is back where it started: per pixel, ON − OFF events times the
    threshold equal the log-intensity change modulo less than one threshold (here: zero change)."""
    images, _ = D.digits.load("test")
    ev = event_digits.events("test")
    for i in range(5):
        e = ev[i]
        net = np.zeros((event_digits.SENSOR, event_digits.SENSOR))
        np.add.at(net, (e["y"], e["x"]), np.where(e["p"] == 1, 1, -1))
        assert np.all(np.abs(net * event_digits.THRESHOLD) < event_digits.THRESHOLD)  # net zero
        assert np.all(np.diff(e["t"]) >= 0) and len(e) > 50
    start = np.log(event_digits.place(images[:1, ..., 0].astype(np.float64), 0.0, 0.0) + event_digits.LOG_EPS)
    mid = np.log(event_digits.place(images[:1, ..., 0].astype(np.float64), 2.0, 1.0) + event_digits.LOG_EPS)
    e = event_digits.simulate(images[:1, ..., 0])[0]
    e = e[e["t"] <= event_digits.SACCADE_US]  # after the first saccade, at offset (2, 1)
    net = np.zeros_like(start[0])
    np.add.at(net, (e["y"], e["x"]), np.where(e["p"] == 1, 1, -1))
    assert np.all(np.abs(mid[0] - (start[0] + net * event_digits.THRESHOLD)) < event_digits.THRESHOLD + 1e-9)


def test_event_digits_are_bit_for_bit_reproducible():
    cfg = events.read_config({"frames": 6, "max_count": 2})
    a = event_digits.load("test", cfg)[0].tobytes()
    event_digits.events.cache_clear()
    event_digits.load.cache_clear()
    images, _ = D.digits.load("test")
    again = event_digits.simulate(images[..., 0])
    assert all(np.array_equal(x, y) for x, y in zip(again, event_digits.events("test")))
    assert event_digits.load("test", cfg)[0].tobytes() == a


def test_event_batches_reproduce_from_seed_and_step():
    cfg = {"name": "event_digits", "batch_size": 16, "crop_padding": 1, "cutout": 2, "events": {"frames": 4}}
    it = D.train_batches(cfg, seed=3)
    run = [next(it) for _ in range(3)]
    resumed = next(D.train_batches(cfg, seed=3, start_step=2))
    assert run[2]["image"].shape == (16, 4, 10, 10, 2)
    assert resumed["image"].tobytes() == run[2]["image"].tobytes()
    assert np.array_equal(resumed["label"], run[2]["label"])
    q = run[0]["image"]  # augmentation keeps frame values on the quantum grid
    assert set(np.unique(q).tolist()) <= {0.0, 1.0}
    other = next(D.train_batches(cfg, seed=4))
    assert other["image"].tobytes() != run[0]["image"].tobytes()


def test_event_info_and_config_errors():
    info = D.info("event_digits", events={"frames": 5, "max_count": 3})
    assert info.image_shape == (5, 10, 10, 2) and info.frames == 5 and info.max_count == 3
    assert D.info("digits").frames is None and D.info("digits").max_count is None
    assert D.info("nmnist").image_shape == (8, 34, 34, 2)
    with pytest.raises(ValueError, match="data.image_size"):
        D.read_config({"name": "nmnist", "image_size": 32})
    with pytest.raises(ValueError, match="data.flip"):
        D.read_config({"name": "dvsgesture", "flip": True})
    with pytest.raises(ValueError, match=r"\[B, 5, 10, 10, 2\]"):
        D.check_batch(np.zeros((2, 10, 10, 2), np.float32), np.zeros(2, np.int32), 10, info.image_shape)


# ----------------------------------------------------------------------------- tonic datasets on disk


@pytest.mark.parametrize("name", sorted(events.SOURCES))
def test_missing_tonic_dataset_is_one_line_that_says_how_to_prepare(name, tmp_path):
    for data_dir in (str(tmp_path), None):
        with pytest.raises(FileNotFoundError) as e:
            D.load({"name": name, "data_dir": data_dir}, "train")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("data.data_dir: ") and events.SOURCES[name].title in msg
        assert f"tonic.datasets.{events.SOURCES[name].tonic_name}(save_to=" in msg
    assert os.listdir(tmp_path) in ([], [events.SOURCES[name].tonic_name])  # nothing downloaded


def write_nmnist_bin(path, ev):
    """N-MNIST's 40-bit event records (x, y, p|t[22:16], t[15:8], t[7:0])."""
    raw = np.zeros((len(ev), 5), np.uint8)
    t = ev["t"].astype(np.uint32)
    raw[:, 0], raw[:, 1] = ev["x"], ev["y"]
    raw[:, 2] = (ev["p"].astype(np.uint32) << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    os.makedirs(os.path.dirname(path), exist_ok=True)
    raw.tofile(path)


def test_nmnist_from_a_fake_prepared_folder(tmp_path):
    written = {}
    for split, folder in (("train", "Train"), ("test", "Test")):
        for label in (3, 1):
            for k in range(2):
                ev = stream(n=40, w=34, h=34, t_max=300000, seed=label * 10 + k)
                path = tmp_path / "NMNIST" / folder / str(label) / f"{k:05d}.bin"
                write_nmnist_bin(str(path), ev)
                written.setdefault(split, []).append((str(path), ev, label))
    cfg = {"name": "nmnist", "data_dir": str(tmp_path), "events": {"frames": 3, "max_count": 2}}
    ds = D.load(cfg, "test")
    frames, labels = ds.get([0, 1, 2, 3])
    expected = sorted(written["test"], key=lambda r: r[0])  # recordings in path order
    assert labels.tolist() == [r[2] for r in expected] and frames.shape == (4, 3, 34, 34, 2)
    ecfg = events.read_config(cfg["events"])
    for f, (_, ev, _) in zip(frames, expected):
        np.testing.assert_array_equal(f, events.to_frames(ev, (34, 34), ecfg))
    batch = next(D.train_batches({**cfg, "batch_size": 2}, seed=0))
    assert batch["image"].shape == (2, 3, 34, 34, 2)
    assert len(D.load(cfg, "train")) == 4


def test_dvsgesture_from_a_fake_prepared_folder(tmp_path):
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        for user, label in (("user01_led", 4), ("user02_natural", 7)):
            ev = stream(n=30, w=128, h=128, t_max=5000, seed=label)
            arr = np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], 1).astype(np.float64)  # t in ms on disk
            os.makedirs(tmp_path / "DVSGesture" / folder / user, exist_ok=True)
            np.save(tmp_path / "DVSGesture" / folder / user / f"{label}.npy", arr)
    cfg = {"name": "dvsgesture", "data_dir": str(tmp_path), "events": {"frames": 4, "size": 48}}
    frames, labels = D.eval_arrays(cfg, "test")
    assert frames.shape == (2, 4, 48, 48, 2) and labels.tolist() == [4, 7] and frames.max() == 1.0


def test_cifar10dvs_split_is_per_class_by_path():
    paths = [f"{c}/{i:04d}.aedat4" for c in ("cat", "dog") for i in range(10)][::-1]
    targets = [3 if p.startswith("cat") else 5 for p in paths]
    train = events.split_indices(paths, targets, "train")
    test = events.split_indices(paths, targets, "test")
    assert len(train) == 18 and len(test) == 2 and not set(train) & set(test)
    assert sorted(paths[i] for i in test) == ["cat/0009.aedat4", "dog/0009.aedat4"]


# ----------------------------------------------------------------------------- frames encoder and models


def event_config(**model):
    return ml_collections.ConfigDict({"data": {"name": "event_digits", "events": {"frames": 3}},
                                      "model": {"name": "digits_mlp", "T": 3, "encoder": {"name": "frames"},
                                                "kwargs": {"hidden": (8,)}, **model}})


def test_frames_encoder_is_a_reshape_and_model_gradients_reach_the_frames():
    config = event_config()
    model = models.from_config(config)
    x = jnp.asarray(next(D.eval_batches(config.data, batch_size=2))["image"])
    variables = model.init(jax.random.key(0), x)
    f = models.logits_fn(model, variables)
    total, g = jax.jit(jax.value_and_grad(lambda z: f(z, None).sum()))(x)
    assert bool(jnp.isfinite(total)) and g.shape == x.shape and bool(jnp.any(g != 0))  # attacks differentiate wrt the frames
    seq = encoding.frames(x, 3)
    assert seq.shape == (3, 2, 10, 10, 2) and bool(jnp.all(seq[1] == x[:, 1]))


def test_frames_model_errors_name_the_field():
    with pytest.raises(ValueError, match="model.T: 4 time steps but data.events.frames = 3"):
        models.from_config(event_config(T=4))
    with pytest.raises(ValueError, match="model.encoder.name: 'direct' on event data"):
        models.from_config(event_config(encoder={"name": "direct"}))
    images = ml_collections.ConfigDict({"data": {"name": "digits"},
                                        "model": {"name": "digits_conv", "encoder": {"name": "frames"}}})
    with pytest.raises(ValueError, match="model.encoder.name: 'frames' reads event frames"):
        models.from_config(images)
    model = models.from_config(event_config())
    with pytest.raises(ValueError, match="rank 5"):
        model.init(jax.random.key(0), jnp.zeros((2, 10, 10, 2)))


def test_frames_rsc_is_stochastic_and_keyed():
    config = event_config(encoder={"name": "frames_rsc", "sigma": 0.2, "per_step": True})
    model = models.from_config(config)
    assert model.stochastic and model.encoder == EncoderConfig("frames_rsc", sigma=0.2, per_step=True)
    x = jnp.zeros((2, 3, 10, 10, 2))
    variables = jax.eval_shape(model.init, {"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    f = models.logits_fn(model, variables)
    with pytest.raises(ValueError, match="stochastic"):
        jax.eval_shape(f, x, None)
    enc = Encoder(3, model.encoder)  # the model's encoder: noise from the "noise" rng, fresh per frame
    a, b = (enc.apply({}, x, rngs={"noise": jax.random.key(k)}) for k in (2, 2))
    c = enc.apply({}, x, rngs={"noise": jax.random.key(3)})
    assert a.shape == (6, 10, 10, 2) and bool(jnp.all(a == b)) and not bool(jnp.all(a == c))
    assert not bool(jnp.all(a[0] == a[1]))  # per_step: frame 0 and frame 1 of example 0 differ


@pytest.mark.parametrize("name,kwargs", [
    ("events_dvsgesture_vgg11", {"stages": (4, "A", 4, "A", 8, "A"), "hidden": (8,)}),
    ("events_cifar10dvs_resnet19", {"stem_features": 4, "stages": ((4, 1, 1), (8, 1, 2)), "hidden": (8,)}),
    ("events_nmnist", {"features": (4,), "hidden": 8}),
])
def test_event_paper_configs_build_on_a_zero_batch(name, kwargs):
    import importlib

    config = importlib.import_module(f"launch.configs.{name}").get_config()
    config.model.kwargs = kwargs
    config.model.T = config.data.events.frames = 2
    config.data.events.size = 16
    model = models.from_config(config)
    info = models.dataset_info(config)
    assert info.image_shape == (2, 16, 16, 2) and model.input_channels == 2
    x = jnp.zeros((2,) + info.image_shape)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # traced through, not compiled
    assert jax.eval_shape(model.apply, variables, x).shape == (2, info.num_classes)


def test_tiny_training_run_on_event_digits(tmp_path):
    import importlib

    from jsnn import train

    config = importlib.import_module("launch.configs.events_vanilla").get_config()
    config.data.events.frames = config.model.T = 2
    config.model.name = "digits_mlp"
    config.model.kwargs = ml_collections.ConfigDict({"hidden": (8,)})
    config.data.batch_size = 16
    config.data.test_limit = 32
    config.train.num_steps = 3
    config.train.log_every = 1
    config.train.checkpoint_every = 3
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 3 and results["test_examples"] == 32
    assert 0.0 <= results["clean_accuracy"] <= 1.0
