"""Datasets, random_split, DataLoader and the bundled data sets."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.data import (DataLoader, Dataset, Subset, TensorDataset, default_collate, load_digits,
                           make_regression, make_spirals, make_xor, random_split, resize_bilinear)


def _dataset(rng, n=17, features=3):
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = rng.integers(0, 5, n).astype(np.int64)
    return x, y, TensorDataset(pe.from_numpy(x), pe.from_numpy(y))


class PairList(Dataset):
    """A plain map-style dataset with no batch fast path: samples are (array, int)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


# ----- TensorDataset and Subset ---------------------------------------------------------

def test_tensor_dataset_items_are_rows(rng):
    x, y, ds = _dataset(rng)
    assert len(ds) == 17
    xi, yi = ds[5]
    np.testing.assert_array_equal(xi.numpy(), x[5])
    assert yi.item() == y[5]


def test_tensor_dataset_rejects_mismatched_lengths(rng):
    a = pe.from_numpy(rng.standard_normal((17, 3)))
    b = pe.from_numpy(rng.standard_normal((16,)))
    with pytest.raises(ValueError, match=r"\(17, 3\).*\(16,\)"):
        TensorDataset(a, b)


def test_subset_maps_indices_and_checks_range(rng):
    x, y, ds = _dataset(rng)
    sub = Subset(ds, [16, 0, 3])
    assert len(sub) == 3
    np.testing.assert_array_equal(sub[0][0].numpy(), x[16])
    with pytest.raises(IndexError, match="17"):
        Subset(ds, [0, 17])


# ----- random_split -------------------------------------------------------------------------

def _indices(subset):
    return [int(i) for i in subset.indices]


def test_random_split_counts_partition_the_dataset(rng):
    _, _, ds = _dataset(rng, n=33)
    parts = random_split(ds, [20, 12, 1], generator=3)
    assert [len(p) for p in parts] == [20, 12, 1]
    assert sorted(sum((_indices(p) for p in parts), [])) == list(range(33))


def test_random_split_fractions_follow_pytorch_rounding(rng):
    # floor(33 * f) = 23, 3, 6 -> 32; the one left over goes to the first part.
    _, _, ds = _dataset(rng, n=33)
    parts = random_split(ds, [0.7, 0.1, 0.2], generator=0)
    assert [len(p) for p in parts] == [24, 3, 6]
    assert sorted(sum((_indices(p) for p in parts), [])) == list(range(33))


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Length of split")  # torch warns about the empty parts n=1 gives
def test_random_split_fraction_sizes_match_torch(rng):
    torch = pytest.importorskip("torch")
    for n in (1, 3, 17, 129):
        for fractions in ([0.7, 0.1, 0.2], [0.5, 0.5], [0.34, 0.33, 0.33]):
            ours = [len(p) for p in random_split(list(range(n)), fractions, generator=0)]
            theirs = [len(p) for p in torch.utils.data.random_split(range(n), fractions)]
            assert ours == theirs, (n, fractions)


def test_random_split_is_seeded(rng):
    _, _, ds = _dataset(rng, n=65)
    a = [_indices(p) for p in random_split(ds, [40, 25], generator=7)]
    b = [_indices(p) for p in random_split(ds, [40, 25], generator=7)]
    c = [_indices(p) for p in random_split(ds, [40, 25], generator=8)]
    assert a == b
    assert a != c


def test_random_split_without_generator_follows_manual_seed(rng):
    _, _, ds = _dataset(rng, n=65)
    pe.manual_seed(11)
    a = _indices(random_split(ds, [40, 25])[0])
    pe.manual_seed(11)
    b = _indices(random_split(ds, [40, 25])[0])
    assert a == b


def test_random_split_rejects_bad_lengths(rng):
    _, _, ds = _dataset(rng, n=17)
    with pytest.raises(ValueError, match="sum to 16.*17"):
        random_split(ds, [10, 6])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(ds, [20, -3])


# ----- DataLoader ---------------------------------------------------------------------------

def test_loader_batches_in_order_without_shuffle(rng):
    x, y, ds = _dataset(rng, n=17)
    loader = DataLoader(ds, batch_size=5)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [b[0].shape for b in batches] == [(5, 3), (5, 3), (5, 3), (2, 3)]
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    assert batches[0][1].dtype == pe.int64
    assert batches[0][0].requires_grad is False


def test_loader_drop_last(rng):
    _, _, ds = _dataset(rng, n=17)
    loader = DataLoader(ds, batch_size=5, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert all(b[0].shape[0] == 5 for b in batches)


def _epoch(loader):
    return np.concatenate([b[1].numpy() for b in loader])


def test_loader_shuffle_is_seeded_and_changes_per_epoch(rng):
    x, y, _ = _dataset(rng, n=33)
    ds = TensorDataset(pe.from_numpy(x), pe.arange(33))
    a = DataLoader(ds, batch_size=4, shuffle=True, generator=5)
    b = DataLoader(ds, batch_size=4, shuffle=True, generator=5)
    a1, a2 = _epoch(a), _epoch(a)
    b1, b2 = _epoch(b), _epoch(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    assert sorted(a1.tolist()) == list(range(33))
    c1 = _epoch(DataLoader(ds, batch_size=4, shuffle=True, generator=6))
    assert not np.array_equal(a1, c1)


def test_loader_rows_stay_paired_under_shuffle(rng):
    x, _, _ = _dataset(rng, n=17)
    ds = TensorDataset(pe.from_numpy(x), pe.arange(17))
    for xb, ib in DataLoader(ds, batch_size=3, shuffle=True, generator=1):
        np.testing.assert_array_equal(xb.numpy(), x[ib.numpy()])


def test_loader_collates_plain_samples(rng):
    x, y, _ = _dataset(rng, n=7)
    batches = list(DataLoader(PairList(x, y), batch_size=3))
    assert len(batches) == 3
    xb, yb = batches[0]
    np.testing.assert_array_equal(xb.numpy(), x[:3])
    assert yb.dtype == pe.int64
    np.testing.assert_array_equal(yb.numpy(), y[:3])


def test_collate_keeps_strings_as_a_list_like_torch(rng):
    torch = pytest.importorskip("torch")
    samples = [{"x": rng.standard_normal(2).astype(np.float32), "name": f"img{i}.png", "label": i}
               for i in range(3)]
    ours, ref = default_collate(samples), torch.utils.data.default_collate(samples)
    assert ours["name"] == ref["name"] == ["img0.png", "img1.png", "img2.png"]
    np.testing.assert_array_equal(ours["x"].numpy(), ref["x"].numpy())
    np.testing.assert_array_equal(ours["label"].numpy(), ref["label"].numpy())


def test_loader_over_subset_uses_the_subset_rows(rng):
    x, _, ds = _dataset(rng, n=17)
    sub = Subset(ds, [4, 9, 1, 16])
    (xb, _), = list(DataLoader(sub, batch_size=4))
    np.testing.assert_array_equal(xb.numpy(), x[[4, 9, 1, 16]])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_loader_rejects_bad_batch_size(rng, bad):
    _, _, ds = _dataset(rng)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=bad)


# ----- digits -------------------------------------------------------------------------------

def test_digits_8x8():
    ds = load_digits()
    x, y = (t.numpy() for t in ds.tensors)
    assert len(ds) == 1797
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() >= 170  # the set is close to balanced
    assert x.min() == 0.0 and x.max() == 1.0
    # the raw pixels are counts 0..16
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    # images differ from one another and the average digit has ink in the middle
    assert len(np.unique(x.reshape(1797, -1), axis=0)) > 1700
    assert x[:, 0, 2:6, 2:6].mean() > x[:, 0, :, 0].mean()


def test_digits_28x28_flatten_normalize():
    small = load_digits().tensors[0].numpy()
    big = load_digits(size=28).tensors[0].numpy()
    assert big.shape == (1797, 1, 28, 28)
    assert 0.0 <= big.min() and big.max() <= 1.0
    # the upscale keeps each image's mean brightness to within interpolation error
    np.testing.assert_allclose(big.mean(axis=(2, 3)), small.mean(axis=(2, 3)), atol=0.03)
    flat = load_digits(flatten=True).tensors[0].numpy()
    np.testing.assert_array_equal(flat, small.reshape(1797, 64))
    norm = load_digits(size=28, normalize=True).tensors[0].numpy()
    assert abs(norm.mean()) < 1e-4 and abs(norm.std() - 1) < 1e-4


def test_digits_rejects_other_sizes():
    with pytest.raises(ValueError, match="8 or 28.*16"):
        load_digits(size=16)


# ----- resize -------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("src,dst", [((8, 8), (28, 28)), ((5, 7), (17, 3)), ((1, 3), (3, 1)), ((33, 17), (33, 17))])
def test_resize_bilinear_matches_torch(rng, src, dst):
    torch = pytest.importorskip("torch")
    images = rng.standard_normal((3, *src))
    ours = resize_bilinear(images, dst)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(images)[:, None], size=dst, mode="bilinear",
                                             align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_resize_bilinear_keeps_constants_and_checks_size(rng):
    c = rng.standard_normal()
    np.testing.assert_allclose(resize_bilinear(np.full((2, 5, 3), c), (17, 33)), c)
    with pytest.raises(ValueError, match="positive"):
        resize_bilinear(np.ones((4, 4)), (0, 3))


# ----- synthetic sets -----------------------------------------------------------------------

def test_xor_labels_follow_the_sign_rule():
    x, y = (t.numpy() for t in make_xor(n=401, noise=0.1, seed=3).tensors)
    assert x.shape == (401, 2) and y.shape == (401,) and y.dtype == np.int64
    agree = np.mean(y == (x[:, 0] * x[:, 1] < 0))
    assert agree > 0.99
    assert 0.35 < y.mean() < 0.65


def test_spirals_classes_and_seed():
    x, y = (t.numpy() for t in make_spirals(n=301, classes=4, seed=1).tensors)
    assert x.shape == (301, 2) and set(np.unique(y)) == {0, 1, 2, 3}
    assert np.bincount(y).max() - np.bincount(y).min() <= 1
    assert np.abs(x).max() <= 1.0 + 1e-6
    again = make_spirals(n=301, classes=4, seed=1).tensors[0].numpy()
    other = make_spirals(n=301, classes=4, seed=2).tensors[0].numpy()
    np.testing.assert_array_equal(x, again)
    assert not np.allclose(x, other)
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_spirals(classes=1)


def test_regression_is_learnable_but_not_linear():
    x, y = (t.numpy().astype(np.float64) for t in make_regression(n=2000, features=5, noise=0.1, seed=0).tensors)
    assert x.shape == (2000, 5) and y.shape == (2000, 1)
    design = np.hstack([x, np.ones((2000, 1))])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    # a linear fit explains most of the variance but leaves the nonlinear part (var ~0.125)
    assert residual.var() < 0.5 * y.var()
    assert residual.var() > 2 * 0.1 ** 2
