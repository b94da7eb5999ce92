"""Decoding batches for the model: order, chunk-aligned spans, progress, unreadable images, stopping."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from explorer.extraction.decode import BatchDecoder, run_batches, spans
from explorer.extraction.extractor import FeatureExtractor

from ..helpers import Tiny


class _Item:
    def __init__(self, i: int, fail: bool = False) -> None:
        self.i, self.fail = i, fail

    def read_bytes(self) -> bytes:
        import io

        from PIL import Image

        if self.fail:
            raise OSError(f"item {self.i} unreadable")
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (self.i, 0, 0)).save(buf, "PNG")
        return buf.getvalue()


def _to_tensor(img: object) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255


def test_spans_respect_chunk_boundaries() -> None:
    got = spans(600, 32, 256)
    assert got[7] == (224, 256) and got[8] == (256, 288) and got[-1] == (576, 600)
    assert sum(e - s for s, e in got) == 600
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(0, 4) == []


@pytest.mark.parametrize("background", [True, False])
def test_order_progress_and_errors(background: bool) -> None:
    items = [_Item(i) for i in range(10)]
    seen = []
    ex = FeatureExtractor(Tiny().eval(), ["flatten"], model_name="tiny")
    with BatchDecoder(items, _to_tensor, spans(10, 4), workers=2, background=background) as batches:
        for s, e, feats in run_batches(ex, batches, progress=lambda d, t: seen.append((d, t))):
            assert feats["flatten"].shape == (e - s, 2)
            # channel 0 of the 1x1 conv sums R+G+B: R = i/255 per image, in order
            np.testing.assert_allclose(feats["flatten"][:, 0], np.arange(s, e) / 255, rtol=1e-5)
    assert seen == [(4, 10), (8, 10), (10, 10)]
    bad = [_Item(0), _Item(1, fail=True), _Item(2)]  # alone in its batch, and beside a good one
    for batch_size in (1, 2):
        with BatchDecoder(bad, _to_tensor, spans(3, batch_size), background=background) as batches:
            got = np.concatenate([f["flatten"] for _, _, f in run_batches(ex, batches)])
        assert got.shape == (3, 2)  # a blank stood in for the unreadable image, reported:
        assert batches.unreadable == {1: "unreadable file: item 1 unreadable"}


def test_closed_unread_stops_its_thread() -> None:
    before = {t.ident for t in threading.enumerate()}
    p = BatchDecoder([_Item(i) for i in range(64)], _to_tensor, spans(64, 1), depth=1)
    time.sleep(0.05)  # the producer fills its queue and waits
    p.close()
    assert not any(t.name == "explorer-decode" and t.ident not in before for t in threading.enumerate())


def test_decoding_between_batches_stops_its_threads_when_left_early() -> None:
    before = {t.ident for t in threading.enumerate()}
    with BatchDecoder([_Item(i) for i in range(64)], _to_tensor, spans(64, 4), workers=2, background=False) as batches:
        it = iter(batches)
        next(it)  # the consumer stops after one batch (an error, a cancel) and still holds the iterator
    time.sleep(0.05)
    assert {t.ident for t in threading.enumerate()} <= before
    del it
