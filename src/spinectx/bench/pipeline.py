"""Data-pipeline throughput: augmented training samples per second in one process (= per
DataLoader worker), at the training input size.

A sample is what one training step consumes per image: the frame (decoded-frame cache read, or a
neighbouring slice), the full SPEC §3 augmentation (resize, landmark jitter, rotation / shift /
zoom warp, intensity scaling, polynomial bias field, flip) and the codec's training targets for
that sample. The reference is a straightforward pipeline that re-reads and decodes the DICOM file
with pydicom for every sample (then the same augmentation and encoding).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pydicom

from spinectx.data.cache import normalise_intensity
from spinectx.data.dataset import SpineDataset
from spinectx.data.transforms import SpineTransform


def warm_cache(dataset: SpineDataset) -> int:
    """Decode every frame the dataset can serve (annotated slice and its neighbours) into the
    cache once, so the timed loop sees the steady state. Returns the number of frames."""
    refs = set()
    for r in dataset.records:
        for j in (r.slice_index - 1, r.slice_index, r.slice_index + 1):
            if 0 <= j < len(r.slices):
                refs.add(r.slices[j])
    for ref in sorted(refs, key=str):
        dataset.cache.load(ref)
    return len(refs)


def encode_one(codec, sample: dict) -> object:
    """The codec's training targets of one transformed sample (what the module computes per image)."""
    size = tuple(sample["image"].shape[-2:])
    return codec.encode(sample["keypoints"][None], sample["visible"][None], size)


def samples_per_second(make_sample: Callable[[int], dict], codec, n: int, warmup: int = 4, rounds: int = 3) -> float:
    """Throughput of ``make_sample(i)`` + target encoding: the median over ``rounds`` of ``n``
    samples each (after ``warmup`` samples)."""
    import statistics

    for i in range(warmup):
        encode_one(codec, make_sample(i))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            encode_one(codec, make_sample(i))
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def naive_sample(dataset: SpineDataset, transform: SpineTransform) -> Callable[[int], dict]:
    """The reference: pydicom re-reads and decodes the annotated frame for every sample."""

    def make(i: int) -> dict:
        record = dataset.records[i % len(dataset.records)]
        pixels = pydicom.pixels.pixel_array(record.frame_path, index=record.frame_ref.frame).astype(np.float32)
        return transform(dataset.raw_sample(i, image=normalise_intensity(pixels)))

    return make


def stage_times(dataset: SpineDataset, codec, n: int) -> dict:
    """Milliseconds per sample of each stage: frame read (cache), augmentation, bias field alone,
    target encoding."""
    raws = [dataset.raw_sample(i) for i in range(min(n, 32))]
    start = time.perf_counter()
    for i in range(n):
        dataset.raw_sample(i)
    read = (time.perf_counter() - start) / n
    transform = dataset.transform
    outs = []
    start = time.perf_counter()
    for i in range(n):
        outs.append(transform(raws[i % len(raws)]))
    augment = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for i in range(n):
        encode_one(codec, outs[i % len(outs)])
    encode = (time.perf_counter() - start) / n
    bias = next((t for t in (transform._compose.transforms if transform._compose else [])
                 if type(t).__name__ == "RandomPolynomialBiasField"), None)
    bias_ms = float("nan")
    if bias is not None:
        img = outs[0]["image"][0].numpy().copy()
        coefs = bias.random_generator.uniform(-bias.coefficient, bias.coefficient, bias._n_terms)
        start = time.perf_counter()
        for _ in range(n):
            bias.apply(img, coefficients=coefs)
        bias_ms = 1e3 * (time.perf_counter() - start) / n
    return {"read_ms": 1e3 * read, "augment_ms": 1e3 * augment, "bias_field_ms": bias_ms, "encode_ms": 1e3 * encode}


def bias_field_keeps_range(order: int = 3, coefficient: float = 0.5) -> dict:
    """A bright ramp (0 to 3× the normalisation's upper percentile, i.e. far above '255' in 8-bit
    terms) through the bias field: the output must be the input times the positive field, so
    intensities above the range stay above it instead of wrapping around."""
    from spinectx.data.transforms import RandomPolynomialBiasField, bias_field

    bias = RandomPolynomialBiasField(order=order, coefficient=coefficient, p=1.0)
    img = np.linspace(0.0, 3.0, 512 * 512, dtype=np.float32).reshape(512, 512)
    coefs = np.full(bias._n_terms, coefficient)
    out = bias.apply(img.copy(), coefficients=coefs)
    field = bias_field(coefs, order, img.shape)
    return {"max_in": float(img.max()), "max_out": float(out.max()),
            "equals_input_times_field": bool(np.allclose(out, img * field, rtol=1e-5, atol=1e-6)),
            "field_positive": bool((field > 0).all())}
