"""Bad input to nn.functional raises an error that names the op and what is wrong with it."""
import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F


@pytest.fixture
def x4(rng):
    return pe.tensor(rng.standard_normal((2, 3, 8, 8)))


def test_conv2d_rank_channels_groups_and_padding(rng, x4):
    w = pe.tensor(rng.standard_normal((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d expected 3-D or 4-D input \(N, C, H, W\), got shape \(8, 8\)"):
        F.conv2d(pe.tensor(rng.standard_normal((8, 8))), w)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\).*3 channels.*\(4, 2, 3, 3\).*groups=1"):
        F.conv2d(x4, pe.tensor(rng.standard_normal((4, 2, 3, 3))))
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        F.conv2d(x4, pe.tensor(rng.standard_normal((4, 1, 3, 3))), groups=3)
    with pytest.raises(ValueError, match=r"bias of shape \(3,\).*\(4,\)"):
        F.conv2d(x4, w, pe.tensor(rng.standard_normal(3)))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        F.conv2d(x4, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        F.conv2d(x4, w, padding="full")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x4, w, stride=0)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        F.conv2d(x4, w, dilation=4)


def test_dtype_errors_name_the_dtype(rng, x4):
    ints = pe.tensor(rng.integers(0, 5, (2, 3, 8, 8)))
    with pytest.raises(TypeError, match="conv2d: input must be a floating-point tensor, got dtype"):
        F.conv2d(ints, pe.tensor(rng.standard_normal((4, 3, 3, 3))))
    with pytest.raises(TypeError, match="conv2d: input has dtype .*float64.* but weight has dtype .*float32"):
        F.conv2d(x4, pe.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)))
    with pytest.raises(TypeError, match="linear: input has dtype .*float64.* but bias has dtype .*float32"):
        F.linear(x4, pe.tensor(rng.standard_normal((2, 8))),
                 pe.tensor(rng.standard_normal(2).astype(np.float32)))
    with pytest.raises(TypeError, match="relu: input must be a floating-point"):
        F.relu(ints)
    with pytest.raises(TypeError, match="must be a Tensor, got ndarray"):
        F.relu(rng.standard_normal(3))


def test_linear_shape_mismatch_names_both_shapes(rng):
    with pytest.raises(ValueError, match=r"input of shape \(3, 5\) and weight of shape \(2, 4\)"):
        F.linear(pe.tensor(rng.standard_normal((3, 5))), pe.tensor(rng.standard_normal((2, 4))))
    with pytest.raises(ValueError, match="activation must be None, 'relu', 'gelu' or 'gelu_tanh', got 'tanh'"):
        F.linear_activation(pe.tensor(rng.standard_normal((3, 5))),
                            pe.tensor(rng.standard_normal((2, 5))), activation="tanh")


def test_pooling_arguments(rng, x4):
    with pytest.raises(ValueError, match="max_pool2d expected 3-D or 4-D input"):
        F.max_pool2d(pe.tensor(rng.standard_normal((8, 8))), 2)
    with pytest.raises(ValueError, match="should be at most half"):
        F.max_pool2d(x4, 2, padding=2)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) should be at most half of kernel_size \(3, 3\)"):
        F.max_pool2d(x4, 3, padding=2, dilation=2)
    with pytest.raises(ValueError, match="too small for kernel_size"):
        F.avg_pool2d(pe.tensor(rng.standard_normal((1, 1, 2, 2))), 3)
    with pytest.raises(ValueError, match="divisor_override must be a positive int"):
        F.avg_pool2d(x4, 2, divisor_override=0)
    with pytest.raises(ValueError, match="output_size must be positive"):
        F.adaptive_avg_pool2d(x4, (0, 2))


def test_class_losses_check_target(rng):
    x = pe.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(IndexError, match=r"target 3 is out of bounds for 3 classes"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 3, 2])))
    with pytest.raises(IndexError, match=r"target -2 is out of bounds"):
        F.nll_loss(x, pe.tensor(np.array([0, -2, 1, 2])))
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\) needs class-index target of shape \(4,\)"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 2])))
    with pytest.raises(TypeError, match="target must be an integer"):
        F.nll_loss(x, pe.tensor(np.array([0.0, 1.0, 2.0, 1.0])))
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 2, 1])), reduction="avg")
    with pytest.raises(ValueError, match=r"weight must be a .* tensor of shape \(3,\)"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 2, 1])), weight=pe.tensor(np.ones(4)))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 2, 1])), label_smoothing=1.5)


def test_weight_requiring_grad_is_refused(rng):
    x = pe.tensor(rng.standard_normal((4, 3)))
    w = pe.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(NotImplementedError, match="gradient with respect to weight"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 2, 1])), weight=w)


def test_pairwise_losses_check_shapes_and_range(rng):
    a = pe.tensor(rng.uniform(0.1, 0.9, (3, 4)))
    with pytest.raises(ValueError, match=r"target size \(4, 3\) is different to the input size \(3, 4\)"):
        F.mse_loss(a, pe.tensor(rng.standard_normal((4, 3))))
    with pytest.raises(ValueError, match=r"l1_loss: weight of shape \(4,\) must have the size of input \(3, 4\)"):
        F.l1_loss(a, a, weight=pe.tensor(np.ones(4)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(pe.tensor(np.array([0.5, 1.5])), pe.tensor(np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast to input of shape \(3, 4\)"):
        F.binary_cross_entropy_with_logits(a, a, pos_weight=pe.tensor(np.ones(3)))


def test_norm_arguments(rng):
    x = pe.tensor(rng.standard_normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) does not match .* \(2, 3, 5\)"):
        F.layer_norm(x, 4)
    with pytest.raises(ValueError, match=r"weight of shape \(4,\) must equal normalized_shape \(5,\)"):
        F.layer_norm(x, 5, pe.tensor(np.ones(4)))
    with pytest.raises(ValueError, match=r"running_mean of shape \(4,\) does not match the 3 channels"):
        F.batch_norm(x, pe.tensor(np.zeros(4)), pe.tensor(np.ones(3)))
    with pytest.raises(TypeError, match="batch_norm: momentum must be a float, got NoneType"):
        F.batch_norm(x, None, None, training=True, momentum=None)
    with pytest.raises(ValueError, match="more than 1 value per channel when training"):
        F.batch_norm(pe.tensor(rng.standard_normal((1, 3))), None, None, training=True)


def test_dropout_embedding_one_hot_pad_arguments(rng):
    x = pe.tensor(rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)
    w = pe.tensor(rng.standard_normal((5, 2)))
    with pytest.raises(IndexError, match=r"index 5 is out of range for weight of shape \(5, 2\)"):
        F.embedding(pe.tensor(np.array([1, 5])), w)
    with pytest.raises(TypeError, match="embedding: input \\(indices\\) must be an integer"):
        F.embedding(pe.tensor(np.array([1.0, 2.0])), w)
    with pytest.raises(ValueError, match="padding_idx 7 must be within num_embeddings 5"):
        F.embedding(pe.tensor(np.array([1, 2])), w, padding_idx=7)
    with pytest.raises(ValueError, match="smaller than num_classes 3, got 4"):
        F.one_hot(pe.tensor(np.array([1, 4])), 3)
    with pytest.raises(ValueError, match="pad must be an even number of ints"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"reflect padding \(4, 4\) of dim 1 must be at most 3"):
        F.pad(x, (4, 4), mode="reflect")
    with pytest.raises(ValueError, match="mode must be 'constant', 'reflect'"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="negative padding .* only supported in mode='constant'"):
        F.pad(x, (1, -1), mode="replicate")


def test_attention_arguments(rng):
    q = pe.tensor(rng.standard_normal((2, 3, 4)))
    with pytest.raises(ValueError, match=r"query \(2, 3, 4\), key \(2, 5, 3\) and value \(2, 5, 4\)"):
        F.scaled_dot_product_attention(q, pe.tensor(rng.standard_normal((2, 5, 3))),
                                       pe.tensor(rng.standard_normal((2, 5, 4))))
    with pytest.raises(ValueError, match="key/value heads must divide query heads"):
        F.scaled_dot_product_attention(pe.tensor(rng.standard_normal((1, 3, 2, 4))),
                                       pe.tensor(rng.standard_normal((1, 2, 5, 4))),
                                       pe.tensor(rng.standard_normal((1, 2, 5, 4))), enable_gqa=True)
    k = pe.tensor(rng.standard_normal((2, 5, 4)))
    with pytest.raises(ValueError, match="attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=pe.tensor(np.ones((3, 5), dtype=bool)),
                                       is_causal=True)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 5\) does not broadcast .* \(2, 3, 5\)"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=pe.tensor(np.ones((4, 5), dtype=bool)))
    with pytest.raises(TypeError, match="attn_mask must be bool or the query's dtype"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=pe.tensor(np.ones((3, 5), dtype=np.int64)))
