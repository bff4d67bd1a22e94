"""Reading PREPARED TensorFlow Datasets without TensorFlow (and never downloading).

TFDS 4.9 reads ``array_record`` (or ``parquet``) files through random-access *data sources*
(``builder.as_data_source``) that deserialize with protobuf and decode images with PIL, so no
TensorFlow is needed at training time. Two consequences:

* Data must be prepared once, on a machine with internet *and TensorFlow* (TFDS encodes the
  images with ``tf.image`` while preparing), in the ``array_record`` format. The default
  ``tfrecord`` format cannot be read without TensorFlow. See :func:`prepare_instructions`.
* Nothing here calls ``download_and_prepare``; a missing dataset fails fast with the command
  that prepares it.

Small datasets (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN) are decoded once into uint8 arrays in
memory (:func:`load_arrays`); ImageNet is read per batch (:class:`ImageSource`): JPEG bytes are
read from the source and decoded + resized with PIL in a thread pool.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import os

import numpy as np
from PIL import Image

READABLE_FORMATS = ("array_record", "parquet")

# Datasets that TFDS cannot download by itself.
_MANUAL = {
    "imagenet2012": ("ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org "
                     "(registration needed) into MANUAL_DIR"),
}


def prepare_instructions(name: str, data_dir) -> str:
    """How to prepare ``name`` in ``data_dir`` so that :func:`open_source` can read it.

    Example:
        >>> from jsnn.data.tfds import prepare_instructions
        >>> print(prepare_instructions("mnist", "/data/tfds").splitlines()[2])
          tfds build mnist --data_dir=/data/tfds --file_format=array_record
        >>> "--manual_dir=MANUAL_DIR" in prepare_instructions("imagenet2012", None)  # needs a manual download
        True
    """
    target = data_dir if data_dir is not None else "~/tensorflow_datasets"
    manual = _MANUAL.get(name)
    lines = [
        "Prepare it once on a machine with internet (TensorFlow is needed for preparing only):",
        "  pip install tensorflow tensorflow-datasets array_record",
    ]
    if manual:
        lines.append(f"  first download {manual}")
    lines += [
        f"  tfds build {name} --data_dir={target} --file_format=array_record"
        + (" --manual_dir=MANUAL_DIR" if manual else ""),
        "or, in Python:",
        f"  tfds.builder({name!r}, data_dir={str(target)!r}, file_format='array_record')"
        + (".download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))"
           if manual else ".download_and_prepare()"),
        f"then copy {target}/{name} to this machine and set config.data.data_dir to its parent folder.",
        "Data already prepared as tfrecord can be converted instead (needs TensorFlow): "
        f"tfds convert_format --root_data_dir={target} --out_file_format=array_record",
    ]
    return "\n".join(lines)


def _builder(name: str, data_dir):
    import tensorflow_datasets as tfds  # lazy: slow to import, unused for digits

    return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))


def open_source(name: str, split: str, data_dir=None, *, decoders=None):
    """Random-access source (``len``, ``source[i] -> dict``) of a prepared TFDS split.

    Raises:
      FileNotFoundError: the dataset is not prepared in ``data_dir`` (message says how).
      ValueError: it is prepared in a format that needs TensorFlow, or ``split`` is unknown.

    Example:
        >>> import tempfile
        >>> from jsnn.data.tfds import open_source
        >>> with tempfile.TemporaryDirectory() as data_dir:  # empty: nothing prepared, nothing downloaded
        ...     open_source("mnist", "train", data_dir)
        Traceback (most recent call last):
        FileNotFoundError: data.data_dir='...': dataset 'mnist' is not prepared there (...).
        Prepare it once on a machine with internet (TensorFlow is needed for preparing only):
        ...
    """
    builder = _builder(name, data_dir)
    try:
        return builder.as_data_source(split=split, decoders=decoders)
    except (NotImplementedError, FileNotFoundError) as e:
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"data.data_dir={data_dir!r}: dataset {name!r} is not prepared there "
                f"(looked for {builder.data_dir}/dataset_info.json; downloading is disabled).\n"
                + prepare_instructions(name, data_dir)) from e
        fmt = builder.info.file_format
        fmt = getattr(fmt, "value", fmt)
        if fmt not in READABLE_FORMATS:
            raise ValueError(
                f"data.data_dir={data_dir!r}: dataset {name!r} is prepared in the {fmt!r} format at "
                f"{builder.data_dir}, which needs TensorFlow to read; jsnn reads {READABLE_FORMATS}.\n"
                + prepare_instructions(name, data_dir)) from e
        raise


def _decode_worker_count(num_workers: int | None) -> int:
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    return max(1, int(num_workers))


def load_arrays(name: str, split: str, data_dir=None, limit: int | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Decodes the first ``limit`` (all if None) examples of a split into memory.

    Returns:
      images ``uint8 [N, H, W, C]`` (as stored by TFDS) and labels ``int64 [N]``.
    """
    source = open_source(name, split, data_dir)
    n = len(source) if limit is None else min(int(limit), len(source))
    if n == 0:
        raise ValueError(f"dataset {name!r} split {split!r} in data_dir={data_dir!r} is empty")
    first = source[0]
    images = np.empty((n, *np.shape(first["image"])), dtype=np.asarray(first["image"]).dtype)
    labels = np.empty((n,), dtype=np.int64)
    for i in range(n):
        ex = first if i == 0 else source[i]
        images[i] = ex["image"]
        labels[i] = ex["label"]
    return images, labels


def decode_resize(data: bytes, size: int) -> np.ndarray:
    """JPEG/PNG bytes → RGB ``uint8 [size, size, 3]``: shorter side resized to ``size``, centre crop.

    Uses PIL's JPEG draft mode (DCT-domain downscaling) before a bicubic resize, as in
    fast ImageNet loaders; the aspect ratio is kept and the central square is cropped.

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> from jsnn.data.tfds import decode_resize
        >>> im = np.zeros((20, 40, 3), np.uint8)
        >>> im[:, :20] = (255, 0, 0)  # left half red, right half blue: 40×20, 2:1
        >>> im[:, 20:] = (0, 0, 255)
        >>> buf = io.BytesIO()
        >>> Image.fromarray(im).save(buf, format="PNG")
        >>> out = decode_resize(buf.getvalue(), size=8)  # 16×8, then the central 8×8
        >>> out.shape, out.dtype, out[0, 0].tolist(), out[0, -1].tolist()
        ((8, 8, 3), dtype('uint8'), [255, 0, 0], [0, 0, 255])
    """
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))  # only ever downscales to >= the requested size
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


class ImageSource:
    """Random-access split of a large encoded-image dataset, decoded and resized per batch.

    ``get(indices)`` returns ``uint8 [len(indices), size, size, 3]`` images and ``int64`` labels.
    Record bytes are read serially (TFDS sources are not documented thread-safe); PIL decoding
    (which releases the GIL) runs in a thread pool of ``num_workers`` threads.
    """

    def __init__(self, name: str, split: str, data_dir=None, *, image_size: int,
                 limit: int | None = None, num_workers: int | None = None):
        self.name, self.split, self.image_size = name, split, int(image_size)
        from tensorflow_datasets import decode

        self._source = open_source(name, split, data_dir, decoders={"image": decode.SkipDecoding()})
        n = len(self._source)
        self._len = n if limit is None else min(int(limit), n)
        self._workers = _decode_worker_count(num_workers)

    def __len__(self) -> int:
        return self._len

    @functools.cached_property
    def _pool(self):
        return concurrent.futures.ThreadPoolExecutor(self._workers)

    def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self._len):
            raise IndexError(f"{self.name}/{self.split}: indices must lie in [0, {self._len}), "
                             f"got range [{indices.min()}, {indices.max()}]")
        records = [self._source[int(i)] for i in indices]
        decode = functools.partial(decode_resize, size=self.image_size)
        images = list(self._pool.map(decode, [r["image"] for r in records]))
        out = np.stack(images) if images else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return out, np.asarray([r["label"] for r in records], dtype=np.int64)
