"""slimrt.from_torch: PyTorch modules traced with torch.export, converted, and compared with PyTorch itself.

Parity criterion for every converted model: on the same random inputs,
max|y_slim - y_torch| / max(|y_torch|) <= 1e-4 and identical argmax over the last axis.
Each model is converted once and run at two batch sizes (1 and 3): the batch stays dynamic.
"""
import os
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import slimrt  # noqa: E402
from slimrt.frontends.torch import load_state_dict  # noqa: E402

import torch_models as TM  # noqa: E402

RTOL = 1e-4


def _torch_run(module, x):
    xs = x if isinstance(x, (list, tuple)) else [x]
    with torch.no_grad():
        y = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in xs])
    flat, _ = torch.utils._pytree.tree_flatten(y)
    return [t.numpy() for t in flat]


def _compare(got, want, argmax=True):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape, (g.shape, w.shape)
        scale = max(float(np.max(np.abs(w))), 1e-30)
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) / scale
        assert err <= RTOL, f"relative error {err:.3g} > {RTOL}"
        if argmax and w.ndim >= 1 and w.shape[-1] > 1:
            np.testing.assert_array_equal(np.argmax(g, axis=-1), np.argmax(w, axis=-1))


def _check(module, make, run_slim, example_batch=1, batches=(1, 3), seed=0, argmax=True, optimized=False):
    """Converts on a batch-``example_batch`` example, compares with torch at each of ``batches``
    (and, with ``optimized``, the graph after ``Model.optimize()`` too, as ``save`` writes it)."""
    rng = np.random.default_rng(seed)
    ex = make(rng, example_batch)
    m = slimrt.from_torch(module, tuple(torch.from_numpy(v) for v in ex) if isinstance(ex, list)
                          else torch.from_numpy(ex))
    m.validate()
    assert all(i.shape[0] is None for i in m.inputs), [i.shape for i in m.inputs]  # the batch stays dynamic
    opt = m.optimize().validate() if optimized else None
    for b in batches:
        x = make(rng, b)
        want = _torch_run(module, x)
        _compare(run_slim(m, x), want, argmax)
        if opt is not None:
            _compare(run_slim(opt, x), want, argmax)
    return m


def _count(m, op):
    return sum(n.op == op for n in m.nodes)


# ---------------------------------------------------------------- the architectures

@pytest.mark.parametrize("arch", sorted(TM.ARCHITECTURES))
def test_architecture(arch, run_slim):
    module, make = TM.ARCHITECTURES[arch](seed=1)
    _check(module, make, run_slim, optimized=True)


def test_example_batch_2_numpy_example_and_other_batches(run_slim):
    module, make = TM.resnet(seed=2)
    rng = np.random.default_rng(5)
    m = slimrt.from_torch(module, make(rng, 2))  # numpy example, batch 2: traced as given
    assert m.inputs[0].shape == (None, 3, 16, 16)
    for b in (1, 2, 5):
        x = make(rng, b)
        _compare(run_slim(m, x), _torch_run(module, x))


def test_batch_norm_is_mapped_with_its_statistics(run_slim):
    module, make = TM.resnet(seed=3)
    m = _check(module, make, run_slim)
    bn = [n for n in m.nodes if n.op == "batch_norm"]
    assert len(bn) == 6
    torch_bn = module.stem[1]
    g, b, mean, var = (m.constants[i].to_dense() for i in bn[0].inputs[1:])
    np.testing.assert_array_equal(var, torch_bn.running_var.numpy())
    np.testing.assert_array_equal(mean, torch_bn.running_mean.numpy())
    np.testing.assert_array_equal(g, torch_bn.weight.detach().numpy())
    assert not np.allclose(var, 1.0) and not np.allclose(mean, 0.0)
    assert bn[0].attrs["epsilon"] == pytest.approx(1e-5)


def test_weights_are_converted_to_ir_layouts():
    module, make = TM.lenet5(seed=0)
    m = slimrt.from_torch(module, torch.from_numpy(make(np.random.default_rng(0), 1)))
    conv = [n for n in m.nodes if n.op == "conv2d"][0]
    np.testing.assert_array_equal(m.constants[conv.inputs[1]].to_dense(),
                                  module[0].weight.detach().permute(0, 2, 3, 1).numpy())  # [O, KH, KW, C]
    dense = [n for n in m.nodes if n.op == "dense"][0]
    np.testing.assert_array_equal(m.constants[dense.inputs[1]].to_dense(), module[7].weight.detach().numpy())
    assert conv.attrs["pads"] == [2, 2, 2, 2]
    assert m.metadata["source"] == "torch" and m.metadata["layout"] == "NCHW"


@pytest.mark.parametrize("arch,transposes", [("mlp", 0), ("resnet", 1), ("mobilenetv2", 1), ("xception", 1),
                                             ("concat", 1), ("permuted_flatten", 1), ("vgg", 2),
                                             ("prelu_ceil", 2), ("conv1d", 1)])
def test_transposes_are_minimal(arch, transposes):
    """Input NCHW->NHWC once; conv stacks, residuals and global pooling add none; a flatten of a
    spatial map adds one (back to NCHW, so the order matches PyTorch); permute+flatten adds none."""
    module, make = TM.ARCHITECTURES[arch](seed=0)
    m = slimrt.from_torch(module, torch.from_numpy(make(np.random.default_rng(0), 1)))
    assert _count(m, "transpose") == transposes, m.summary()


# ---------------------------------------------------------------- modules and functional forms

class Fn(nn.Module):
    """Wraps a function of (self, *inputs) with optional submodules / parameters."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for k, v in children.items():
            setattr(self, k, v)

    def forward(self, *xs):
        return self.fn(self, *xs)


def _imgs(*shape):
    return lambda rng, n: rng.standard_normal((n,) + shape).astype(np.float32)


def _p(*shape, seed=0):
    g = torch.Generator().manual_seed(seed + 7)
    return nn.Parameter(torch.randn(*shape, generator=g))


CASES = {
    # convolutions
    "conv_int_padding": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 5, 3, padding=2)), _imgs(3, 7, 6)),
    "conv_tuple_args": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2),
                                                           dilation=(1, 2))), _imgs(3, 9, 11)),
    "conv_same_even_kernel": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 4, padding="same")), _imgs(3, 7, 8)),
    "conv_same_dilated": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, (3, 2), padding="same", dilation=2)),
                          _imgs(3, 9, 8)),
    "conv_valid_stride": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 3, stride=2, padding="valid", bias=False)),
                          _imgs(3, 10, 9)),
    "conv_groups": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(4, 6, 3, groups=2, padding=1)), _imgs(4, 6, 5)),
    "depthwise_multiplier": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(4, 8, 3, groups=4, padding=1)), _imgs(4, 5, 5)),
    "functional_conv": (Fn(lambda s, x: F.conv2d(x, s.w, None, 2, 1)), _imgs(3, 8, 8)),
    "conv_reflect": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")),
                     _imgs(3, 6, 7)),
    "conv_replicate": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 5, padding=2, padding_mode="replicate")),
                       _imgs(3, 6, 7)),
    "conv_circular": (Fn(lambda s, x: s.c(x), c=nn.Conv2d(3, 4, 3, padding=(1, 2), padding_mode="circular")),
                      _imgs(3, 6, 7)),
    "conv1d_reflect_valid": (Fn(lambda s, x: s.b(s.a(x)), a=nn.Conv1d(3, 4, 3, padding=2, padding_mode="reflect"),
                                b=nn.Conv1d(4, 2, 2, padding="valid")), _imgs(3, 9)),
    "pad_constant": (Fn(lambda s, x: F.pad(x, (1, 2, 0, 3), value=0.5)), _imgs(3, 4, 5)),
    "pad_reflect_then_conv": (Fn(lambda s, x: s.c(F.pad(x, (2, 1, 1, 2), mode="reflect")),
                                 c=nn.Conv2d(3, 2, 3)), _imgs(3, 5, 6)),
    "pad_3d_channels": (Fn(lambda s, x: F.pad(x, (1, 1, 0, 0, 2, 1))), _imgs(2, 3, 3)),
    # activations
    "relu6_hardtanh": (Fn(lambda s, x: F.relu6(x * 4) + F.hardtanh(x, -1.0, 2.0) + F.hardtanh(x * 4, 0.0, 6.0)),
                       _imgs(3, 4, 4)),
    "leaky_prelu1": (Fn(lambda s, x: F.leaky_relu(x, 0.2) + s.p(x), p=nn.PReLU(init=0.1)), _imgs(3, 4, 4)),
    "prelu_2d_and_3d": (Fn(lambda s, x: s.p(x) + s.q(x.flatten(2)).view_as(x), p=nn.PReLU(3, 0.2),
                           q=nn.PReLU(3, 0.3)), _imgs(3, 4, 4)),
    "gelus": (Fn(lambda s, x: F.gelu(x) + F.gelu(x, approximate="tanh")), _imgs(6)),
    "silu_hardswish_hardsigmoid": (Fn(lambda s, x: F.silu(x) * F.hardswish(x) - F.hardsigmoid(x)), _imgs(3, 4, 4)),
    "sigmoid_tanh": (Fn(lambda s, x: torch.sigmoid(x) + torch.tanh(x)), _imgs(3, 4, 4)),
    "elu_selu": (Fn(lambda s, x: F.elu(x, 0.7) + F.selu(x)), _imgs(5)),
    "clamps": (Fn(lambda s, x: torch.clamp(x, -0.5, 0.7) + x.clamp(min=0.1) + x.clamp(max=0.2)
                  + torch.clamp(x, 0.0)), _imgs(3, 4)),
    "softmax_dims_4d": (Fn(lambda s, x: torch.cat([F.softmax(s.c(x), 1), F.softmax(s.c(x), -1),
                                                   F.softmax(s.c(x), 2)], 1), c=nn.Conv2d(3, 4, 1)),
                        _imgs(3, 4, 5)),
    "dropout_contiguous_clone": (Fn(lambda s, x: F.dropout(s.d(x), 0.3, s.training).contiguous().clone(),
                                    d=nn.Dropout2d(0.5)), _imgs(3, 4, 4)),
    # pooling
    "maxpool_padding": (Fn(lambda s, x: F.max_pool2d(x, 3, 2, 1)), _imgs(3, 7, 8)),
    "maxpool_ceil_rect": (Fn(lambda s, x: F.max_pool2d(x, (2, 3), (1, 2), ceil_mode=True)), _imgs(3, 7, 8)),
    "avgpool_include_pad": (Fn(lambda s, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)), _imgs(3, 7, 8)),
    "avgpool_ceil": (Fn(lambda s, x: F.avg_pool2d(x, 2, ceil_mode=True)), _imgs(3, 7, 9)),
    "adaptive_avg_divisor": (Fn(lambda s, x: F.adaptive_avg_pool2d(x, (2, 3))), _imgs(3, 4, 6)),
    "adaptive_max_global": (Fn(lambda s, x: s.p(x).flatten(1), p=nn.AdaptiveMaxPool2d(1)), _imgs(3, 4, 6)),
    "pool1d": (Fn(lambda s, x: F.max_pool1d(x, 3, 2, 1) + F.avg_pool1d(x, 3, 2, 1)), _imgs(3, 9)),
    # reductions
    "means": (Fn(lambda s, x: torch.cat([x.mean((2, 3), keepdim=True).flatten(1), x.mean(1).flatten(1),
                                         x.mean(-1).flatten(1), x.mean((1, 3)).flatten(1)], 1)), _imgs(3, 4, 5)),
    "amax_sum": (Fn(lambda s, x: torch.cat([x.amax(1).flatten(1), x.sum((1, 2)), x.amax((2, 3))], 1)),
                 _imgs(3, 4, 5)),
    "squeeze_excite": (Fn(lambda s, x: s.c(x) * torch.sigmoid(s.fc(s.c(x).mean((2, 3))))[:, :, None, None],
                          c=nn.Conv2d(3, 4, 3, padding=1), fc=nn.Linear(4, 4)), _imgs(3, 5, 5)),
    # shapes
    "view_dynamic_batch": (Fn(lambda s, x: s.l(s.c(x).view(x.size(0), -1)), c=nn.Conv2d(3, 4, 3),
                              l=nn.Linear(4 * 3 * 2, 5)), _imgs(3, 5, 4)),
    "reshape_minus_one": (Fn(lambda s, x: s.c(x).reshape(-1, 2, 18).transpose(1, 2).reshape(x.shape[0], -1),
                             c=nn.Conv2d(3, 4, 3)), _imgs(3, 5, 5)),
    "transpose_flatten": (Fn(lambda s, x: s.c(x).transpose(1, 3).flatten(1), c=nn.Conv2d(3, 4, 1)),
                          _imgs(3, 3, 5)),
    "permute_conv_back": (Fn(lambda s, x: s.c(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), c=nn.Conv2d(5, 4, 1)),
                          _imgs(3, 4, 5)),
    "squeeze_unsqueeze": (Fn(lambda s, x: s.p(x).squeeze(-1).unsqueeze(1).squeeze(3).unsqueeze(-1).flatten(1),
                             p=nn.AdaptiveAvgPool2d((2, 1))), _imgs(3, 4, 5)),
    "slices": (Fn(lambda s, x: torch.cat([x[:, 1:3] + x[:, :, -2:, :].reshape(x.size(0), 3, 10)[:, :2, 1:6]
                                          .unsqueeze(2), x[:, -2:, 1:, :-1].transpose(2, 3)], 3)), _imgs(3, 4, 5)),
    "select_unbind": (Fn(lambda s, x: x[:, 1] + sum(x.unbind(1)) + x.select(1, -1)), _imgs(3, 4, 5)),
    "shape_dependent_code": (Fn(lambda s, x: s.l(x.flatten(1) if x.dim() == 4 and x.shape[1] == 3 else x),
                                l=nn.Linear(3 * 2 * 2, 4)), _imgs(3, 2, 2)),
    "split_chunk": (Fn(lambda s, x: torch.cat(list(reversed(s.c(x).chunk(3, dim=1))), 1)
                       + torch.cat(torch.split(s.c(x), [2, 4], 1)[::-1], 1), c=nn.Conv2d(3, 6, 1)),
                    _imgs(3, 4, 4)),
    # arithmetic and broadcasting
    "channel_constants": (Fn(lambda s, x: s.c(x) * s.a + s.b - s.s[None, :, None, None] / 2.0,
                             c=nn.Conv2d(3, 4, 1), a=_p(4, 1, 1), b=_p(1, 4, 1, 1), s=_p(4)), _imgs(3, 4, 5)),
    "scalars": (Fn(lambda s, x: (1.0 - x) * 2 + x / 4 - 3 - (-x) + 2.0 / (x * x + 1) + x ** 2), _imgs(3, 4)),
    "tensor_tensor_broadcast": (Fn(lambda s, x: s.c(x) + s.c(x)[:, :, :1, :] - s.c(x).mean(1, keepdim=True)
                                   * s.c(x)[:, :, :, 2:3], c=nn.Conv2d(3, 4, 1)), _imgs(3, 4, 5)),
    "add_alpha": (Fn(lambda s, x: torch.add(x, s.c(x), alpha=0.5) - torch.sub(x, x * 3, alpha=2),
                     c=nn.Conv2d(3, 3, 1)), _imgs(3, 4, 5)),
    "cat_dims": (Fn(lambda s, x: torch.cat([s.c(x), x, s.c(x)], 2)
                    + torch.cat([x, s.c(x)], 3)[..., :5][:, :, :1, :], c=nn.Conv2d(3, 3, 1)), _imgs(3, 4, 5)),
    "cat_2d": (Fn(lambda s, x: torch.cat([x, x * 2, s.l(x)], 1), l=nn.Linear(5, 3)), _imgs(5)),
    # linear algebra
    "linear_on_feature_map": (Fn(lambda s, x: s.l(s.c(x)), c=nn.Conv2d(3, 4, 1), l=nn.Linear(5, 2)),
                              _imgs(3, 4, 5)),
    "matmul_const_and_bmm": (Fn(lambda s, x: (x @ s.w) @ (x @ s.w).transpose(1, 2) + torch.bmm(x, x.transpose(1, 2))
                                + torch.matmul(x, x.transpose(-1, -2)), w=_p(6, 6)), _imgs(4, 6)),
    "linear_no_bias_3d": (Fn(lambda s, x: s.l(x), l=nn.Linear(6, 3, bias=False)), _imgs(4, 6)),
    # normalisation
    "batchnorm1d_2d_3d": (Fn(lambda s, x: s.a(x.flatten(2)).flatten(1) + s.b(x.flatten(1)),
                             a=nn.BatchNorm1d(3), b=nn.BatchNorm1d(12)), _imgs(3, 2, 2)),
    "batchnorm_no_affine": (Fn(lambda s, x: s.b(x), b=nn.BatchNorm2d(3, affine=False)), _imgs(3, 3, 4)),
    "layernorm_feature_map_and_2d": (Fn(lambda s, x: s.a(s.c(x)) + s.b(x).sum(1, keepdim=True),
                                        c=nn.Conv2d(3, 3, 1), a=nn.LayerNorm(5), b=nn.LayerNorm((4, 5))),
                                     _imgs(3, 4, 5)),
    "layernorm_no_affine": (Fn(lambda s, x: s.a(x), a=nn.LayerNorm(7, elementwise_affine=False)), _imgs(2, 7)),
}
CASES["functional_conv"][0].w = _p(4, 3, 3, 3)


@pytest.mark.parametrize("case", sorted(CASES))
def test_op(case, run_slim):
    module, make = CASES[case]
    TM.randomize(module, 4)
    _check(module, make, run_slim, example_batch=2, argmax=False)


def test_embedding_int32_ids(run_slim):
    module = Fn(lambda s, ids: s.ln(s.e(ids)), e=nn.Embedding(20, 6), ln=nn.LayerNorm(6))
    TM.randomize(module, 1)
    m = _check(module, lambda rng, n: rng.integers(0, 20, (n, 5)).astype(np.int32), run_slim)
    assert m.inputs[0].dtype == "int32"


def test_multiple_inputs_and_outputs(run_slim):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)
            self.l = nn.Linear(6, 4)

        def forward(self, image, vec):
            f = self.c(image)
            g = self.l(vec)
            return {"map": f + g[:, :, None, None], "pooled": f.mean((2, 3)) * g, "same": g}

    module = TM.randomize(Two(), 0)
    rng = np.random.default_rng(3)
    make = lambda rng, n: [rng.standard_normal((n, 3, 5, 5)).astype(np.float32),  # noqa: E731
                           rng.standard_normal((n, 6)).astype(np.float32)]
    m = _check(module, make, run_slim, argmax=False)
    assert [i.name for i in m.inputs] == ["image", "vec"]
    assert m.outputs == ["output_0", "output_1", "output_2"]
    ex = make(rng, 2)
    m2 = slimrt.from_torch(module, tuple(torch.from_numpy(v) for v in ex), input_names=["a", "b"],
                           output_names=["m", "p", "s"])
    assert [i.name for i in m2.inputs] == ["a", "b"] and m2.outputs == ["m", "p", "s"]
    _compare(run_slim(m2, {"a": ex[0], "b": ex[1]}), _torch_run(module, ex), argmax=False)


def test_module_mode_is_restored():
    module, make = TM.vgg(seed=0)
    module.train()
    slimrt.from_torch(module, torch.from_numpy(make(np.random.default_rng(0), 1)))
    assert module.training


def test_code_fixing_the_batch_falls_back_to_a_static_batch(run_slim):
    module = Fn(lambda s, x: s.l(x.view(2, -1)), l=nn.Linear(12, 3))
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="batch"):
        m = slimrt.from_torch(module, torch.from_numpy(x))
    assert m.inputs[0].shape == (2, 3, 4)
    _compare(run_slim(m, x), _torch_run(module, x), argmax=False)


# ---------------------------------------------------------------- refusals

class Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


@torch.library.custom_op("slimrt_test::scaled_twice", mutates_args=())
def _scaled_twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_scaled_twice.register_fake
def _(x):
    return torch.empty_like(x)


class CustomOp(nn.Module):
    def forward(self, x):
        return _scaled_twice(x)


def test_unsupported_op_names_op_and_module_path():
    module = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.ReLU(), Spectrum()))
    with pytest.raises(slimrt.UnsupportedError) as ei:
        slimrt.from_torch(module, torch.randn(2, 8))
    msg = str(ei.value)
    assert "fft_rfft" in msg and "'1.1'" in msg and "Spectrum" in msg


def test_custom_op_is_refused():
    module = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(CustomOp()))
    with pytest.raises(slimrt.UnsupportedError) as ei:
        slimrt.from_torch(module, torch.randn(2, 3, 4, 4))
    msg = str(ei.value)
    assert "slimrt_test::scaled_twice" in msg and "'1.0'" in msg and "CustomOp" in msg


@pytest.mark.parametrize("module,op", [
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.Upsample(scale_factor=2)), "upsample_nearest2d"),
    (nn.Sequential(nn.Linear(4, 4), nn.LogSoftmax(1)), "log_softmax"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, track_running_stats=False)), "batch_norm"),
    (nn.Sequential(nn.Conv2d(3, 3, 1), nn.ConvTranspose2d(3, 3, 2)), "conv_transpose2d"),
])
def test_unsupported_layers(module, op):
    x = torch.randn(2, 3, 4, 4) if isinstance(module[0], nn.Conv2d) else torch.randn(2, 4)
    with pytest.raises(slimrt.UnsupportedError, match=op) as ei:
        slimrt.from_torch(module, x)
    assert "module '1'" in str(ei.value)


def test_bad_arguments():
    with pytest.raises(slimrt.InputError):
        slimrt.from_torch(lambda x: x, torch.randn(2, 3))
    with pytest.raises(slimrt.InputError):
        slimrt.from_torch(nn.Linear(3, 2), torch.randn(2, 3), output_names=["a", "b"])


# ---------------------------------------------------------------- state dicts

def test_state_dict_roundtrip_into_a_module(tmp_path, run_slim):
    src, make = TM.mobilenetv2(seed=7)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)
    sd = load_state_dict(path)
    assert set(sd) == set(src.state_dict()) and all(isinstance(v, torch.Tensor) for v in sd.values())
    dst, _ = TM.mobilenetv2(seed=8)
    dst.load_state_dict(sd)
    x = make(np.random.default_rng(1), 2)
    m = slimrt.from_torch(dst, torch.from_numpy(x))
    _compare(run_slim(m, x), _torch_run(src, x))
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 non-zip format loads too
    torch.save({"w": torch.arange(3.0)}, legacy, _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(load_state_dict(legacy)["w"].numpy(), [0, 1, 2])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_state_dict_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p1 = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Evil(marker)}, p1)
    p2 = tmp_path / "evil.pkl"
    with open(p2, "wb") as f:
        pickle.dump({"w": _Evil(marker)}, f)
    for p in (p1, p2):
        with pytest.raises(slimrt.FormatError):
            load_state_dict(p)
    assert not marker.exists()


def test_damaged_and_non_tensor_state_dicts(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"a.weight": torch.ones(4, 4), "a.bias": torch.zeros(4)}, good)
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "garbage.pt": bytes(range(256)) * 4,
        "empty.pt": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    objs = {
        "list.pt": [torch.ones(2)],
        "tensor.pt": torch.ones(2),
        "intkey.pt": {1: torch.ones(2)},
        "strvalue.pt": {"a": "not a tensor"},
        "nested.pt": {"state_dict": {"a": torch.ones(2)}, "epoch": 3},
        "module.pt": nn.Linear(2, 2),
    }
    for name, obj in objs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.save(obj, tmp_path / name)
    for name in list(cases) + list(objs):
        with pytest.raises(slimrt.FormatError):
            load_state_dict(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.pt")
    with pytest.raises(slimrt.FormatError):
        load_state_dict(tmp_path)
    assert set(load_state_dict(good)) == {"a.weight", "a.bias"}
