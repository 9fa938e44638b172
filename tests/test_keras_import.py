"""slimrt.from_keras: Keras 3 models saved as .keras and legacy .h5, converted and compared with Keras itself.

Parity criterion for every converted model: on the same random inputs,
max|y_slim - y_keras| / max(|y_keras|) <= 1e-4 and identical argmax over the last axis.
"""
import io
import json
import os
import shutil
import zipfile

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import slimrt  # noqa: E402

import keras_models as KM  # noqa: E402

keras = pytest.importorskip("keras")
L = keras.layers

RTOL = 1e-4


def _predict(model, x):
    y = model.predict(x, verbose=0)
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def _compare(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape, (g.shape, w.shape)
        scale = max(float(np.max(np.abs(w))), 1e-30)
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) / scale
        assert err <= RTOL, f"relative error {err:.3g} > {RTOL}"
        if w.ndim >= 1 and w.shape[-1] > 1:
            np.testing.assert_array_equal(np.argmax(g, axis=-1), np.argmax(w, axis=-1))


def _save_both(model, tmp_path, stem="m"):
    pk, ph = tmp_path / f"{stem}.keras", tmp_path / f"{stem}.h5"
    model.save(pk)
    model.save(ph)
    with h5py.File(ph) as f:  # keras 3 really writes the legacy full-model layout for .h5
        assert "model_config" in f.attrs and "model_weights" in f
    return pk, ph


def _check_roundtrip(model, x, tmp_path, run_slim, stem="m"):
    want = _predict(model, x)
    for path in _save_both(model, tmp_path, stem):
        m = slimrt.from_keras(path)
        m.validate()
        assert all(i.shape[0] is None for i in m.inputs)  # the batch stays dynamic
        _compare(run_slim(m, x), want)
    return m


# ---------------------------------------------------------------- the ten architectures

@pytest.mark.parametrize("arch", sorted(KM.ARCHITECTURES))
def test_architecture(arch, tmp_path, run_slim):
    model, make = KM.ARCHITECTURES[arch](seed=1)
    x = make(np.random.default_rng(2), 3)
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_batch_norm_is_mapped_with_its_statistics(tmp_path, run_slim):
    """BN with random gamma/beta/mean/var: converting with default statistics would be far off."""
    model, make = KM.resnet(seed=3)
    x = make(np.random.default_rng(0), 2)
    m = _check_roundtrip(model, x, tmp_path, run_slim)
    bn = [n for n in m.nodes if n.op == "batch_norm"]
    assert len(bn) == 6
    var = m.constants[bn[0].inputs[4]].to_dense()
    assert not np.allclose(var, 1.0)


def test_dense_activation_is_fused_and_layers_stay_separate(tmp_path):
    model, _ = KM.mlp()
    model.save(tmp_path / "mlp.keras")
    m = slimrt.from_keras(tmp_path / "mlp.keras")
    ops = [(n.op, n.attrs.get("act")) for n in m.nodes]
    assert ops == [("dense", "relu"), ("dense", "relu"), ("dense", None), ("softmax", None)]
    w = m.constants[m.nodes[0].inputs[1]].to_dense()
    assert w.shape == (300, 784)  # IR dense weights are [out, in]
    np.testing.assert_array_equal(w, model.layers[0].get_weights()[0].T)


# ---------------------------------------------------------------- graph features

def test_nested_shared_multi_input_output(tmp_path, run_slim):
    keras.utils.set_random_seed(5)
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, L.Dense(6, activation="tanh", name="inner_dense")(inner_in), name="inner_f")
    seq = keras.Sequential([L.Input((6,)), L.Dense(5, name="sd"), L.BatchNormalization(name="sbn")], name="inner_s")
    shared = L.Dense(6, name="shared")
    a = keras.Input((6,), name="a")
    b = keras.Input((6,), name="b")
    ha, hb = shared(a), shared(b)  # one layer, two calls
    ia, ib = inner(ha), inner(hb)  # a nested functional model, called twice
    d = L.Subtract()([ia, ib])
    m = L.Multiply()([ia, hb])
    avg = L.Average()([d, m, ha])
    out1 = seq(avg)
    out2 = L.Concatenate()([out1, L.Add()([d, m])])
    model = keras.Model([a, b], [out1, out2, ia], name="multi")
    KM.randomize(model, 5)
    rng = np.random.default_rng(1)
    x = [rng.standard_normal((4, 6)).astype(np.float32) for _ in range(2)]
    conv = _check_roundtrip(model, x, tmp_path, run_slim)
    assert [i.name for i in conv.inputs] == ["a", "b"]
    # the shared layer's and the nested model's weights are stored once
    assert len([k for k in conv.constants if k.startswith("shared/")]) == 2
    assert len([k for k in conv.constants if k.startswith("inner_f/")]) == 2


def test_deeply_nested_sequential_in_functional(tmp_path, run_slim):
    inner = keras.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3, padding="same", name="c"), L.BatchNormalization()],
                             name="lvl2")
    mid_in = keras.Input((5, 5, 2))
    mid = keras.Model(mid_in, L.ReLU()(inner(mid_in)), name="lvl1")
    top = keras.Sequential([L.Input((5, 5, 2)), mid, L.Flatten(), L.Dense(3)], name="top")
    KM.randomize(top, 7)
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2)).astype(np.float32)
    _check_roundtrip(top, x, tmp_path, run_slim)


@pytest.mark.parametrize("act", ["relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "swish", "hard_silu",
                                 "hard_swish", "hard_sigmoid", "leaky_relu", "elu", "selu", "softmax", "linear"])
def test_activation_arguments(act, tmp_path, run_slim):
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(5, 2, activation=act)(inp)
    x = L.Flatten()(x)
    x = L.Dense(6, activation=act)(x)
    out = L.Activation(act)(x)
    model = KM.randomize(keras.Model(inp, out), 11)
    x = np.random.default_rng(3).standard_normal((3, 4, 4, 3)).astype(np.float32) * 2
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_activation_layers(tmp_path, run_slim):
    inp = keras.Input((6, 5))
    outs = [
        L.ReLU()(inp), L.ReLU(max_value=6.0)(inp), L.ReLU(max_value=1.5)(inp), L.ReLU(negative_slope=0.1)(inp),
        L.LeakyReLU()(inp), L.LeakyReLU(negative_slope=0.05)(inp), L.ELU()(inp), L.ELU(alpha=0.4)(inp),
        L.Softmax()(inp), L.Softmax(axis=1)(inp), L.PReLU()(inp), L.PReLU(shared_axes=[1])(inp),
    ]
    model = KM.randomize(keras.Model(inp, outs), 2)
    x = np.random.default_rng(4).standard_normal((3, 6, 5)).astype(np.float32) * 3
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_shape_preprocessing_and_noop_layers(tmp_path, run_slim):
    data = np.random.default_rng(0).uniform(0, 255, (20, 10, 9, 3)).astype(np.float32)
    norm = L.Normalization()
    norm.adapt(data)
    inp = keras.Input((10, 9, 3))
    x = L.Rescaling(1 / 127.5, offset=-1.0)(inp)
    y = norm(inp)
    x = L.Concatenate()([x, y])
    x = L.GaussianNoise(0.3)(x)
    x = L.ZeroPadding2D(((1, 2), (0, 3)))(x)
    x = L.Cropping2D(((0, 1), (2, 1)))(x)
    x = L.SpatialDropout2D(0.3)(x)
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", groups=2)(x)
    x = L.BatchNormalization()(x)
    x = L.Conv2D(6, 4, strides=(2, 3), padding="same")(x)
    x = L.ActivityRegularization(l1=0.1)(x)
    x = L.LayerNormalization(axis=[2, 3])(x)
    x = L.AveragePooling2D((2, 3), strides=(2, 2), padding="same")(x)  # symmetric pads: see below
    s = x.shape
    x = L.Reshape((s[1] * s[2], s[3]))(x)
    x = L.Dense(7, activation="relu")(x)  # dense on a rank-3 tensor
    x = L.ZeroPadding1D((2, 1))(x)
    x = L.Cropping1D((1, 0))(x)
    x = L.Reshape((-1,))(x)
    x = L.Dropout(0.2)(x)
    x = L.BatchNormalization()(x)
    x = L.Identity()(x)
    out = L.Dense(4)(x)
    model = KM.randomize(keras.Model(inp, out), 9)
    x = data[:3]
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_pooling_variants_keepdims_and_frozen_batch_norm(tmp_path, run_slim):
    inp2 = keras.Input((7, 6, 4), name="img")
    inp1 = keras.Input((9, 4), name="seq")
    frozen = L.BatchNormalization(trainable=False, name="frozen_bn")  # variables created non-trainable
    a = frozen(inp2)
    outs = [
        L.GlobalAveragePooling2D(keepdims=True)(a), L.GlobalMaxPooling2D(keepdims=True)(a),
        L.GlobalMaxPooling2D()(a), L.MaxPooling2D((2, 3), strides=(2, 1))(a),
        L.GlobalAveragePooling1D(keepdims=True)(inp1), L.GlobalMaxPooling1D()(inp1),
        L.MaxPooling1D(3, strides=2, padding="same")(inp1), L.AveragePooling1D(2)(inp1),
    ]
    model = KM.randomize(keras.Model([inp2, inp1], outs), 3)
    rng = np.random.default_rng(6)
    x = [rng.standard_normal((2, 7, 6, 4)).astype(np.float32), rng.standard_normal((2, 9, 4)).astype(np.float32)]
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_same_padding_is_tf_style(tmp_path, run_slim):
    """Even input, odd kernel, stride 2: TF puts the extra padding at the bottom/right, not the top/left."""
    model = keras.Sequential([L.Input((8, 6, 1)), L.Conv2D(1, 3, strides=2, padding="same", use_bias=False)])
    model.layers[0].set_weights([np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)])
    model.save(tmp_path / "p.keras")
    m = slimrt.from_keras(tmp_path / "p.keras")
    assert m.nodes[0].attrs["pads"] == [0, 0, 1, 1]
    x = np.random.default_rng(0).standard_normal((2, 8, 6, 1)).astype(np.float32)
    _compare(run_slim(m, x), _predict(model, x))


def test_same_average_pooling_excludes_padding(tmp_path, run_slim):
    """TF semantics: an edge window averages the real pixels only, pads (0, 1) put at the end.

    (Keras' torch backend replicate-pads when the pads are asymmetric, which is not what the
    TF/JAX backends compute; slimrt follows TF, so this compares with numpy, not with Keras.)
    """
    model = keras.Sequential([L.Input((8, 7, 2)), L.AveragePooling2D(3, strides=2, padding="same")])
    model.save(tmp_path / "ap.keras")
    m = slimrt.from_keras(tmp_path / "ap.keras")
    assert m.nodes[0].attrs["pads"] == [0, 1, 1, 1] and m.nodes[0].attrs["count_include_pad"] == 0
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 2))
    want = np.zeros((2, 4, 4, 2))
    for i in range(4):
        for j in range(4):
            r0, c0 = 2 * i, 2 * j - 1
            win = x[:, max(r0, 0):min(r0 + 3, 8), max(c0, 0):min(c0 + 3, 7), :]
            want[:, i, j, :] = win.mean(axis=(1, 2))
    got = run_slim(m, x.astype(np.float32))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_input_shapes_override(tmp_path, run_slim):
    model = keras.Sequential([L.Input((None, None, 3)), L.Conv2D(4, 3, strides=2, padding="same"),
                              L.GlobalAveragePooling2D(), L.Dense(2)])
    KM.randomize(model, 1)
    model.save(tmp_path / "dyn.keras")
    with pytest.raises(slimrt.UnsupportedError, match="input_shapes"):
        slimrt.from_keras(tmp_path / "dyn.keras")
    m = slimrt.from_keras(tmp_path / "dyn.keras", input_shapes=(9, 7, 3))
    assert m.inputs[0].shape == (None, 9, 7, 3)
    x = np.random.default_rng(0).standard_normal((2, 9, 7, 3)).astype(np.float32)
    _compare(run_slim(m, x), _predict(model, x))
    with pytest.raises(slimrt.InputError):
        slimrt.from_keras(tmp_path / "dyn.keras", input_shapes=(9, 7, 4))


# ---------------------------------------------------------------- tf.keras 2 style legacy file

def _to_tf2_config(cfg):
    """Rewrites a Keras 3 config the way tf.keras 2 wrote it: list inbound nodes, batch_input_shape."""
    def node(n):
        args = n["args"][0]
        ts = args if isinstance(args, list) else [args]
        return [[t["config"]["keras_history"][0], t["config"]["keras_history"][1],
                 t["config"]["keras_history"][2], {}] for t in ts]

    out = {"class_name": cfg["class_name"], "config": dict(cfg["config"])}
    layers = []
    for ld in cfg["config"]["layers"]:
        c = dict(ld["config"])
        if ld["class_name"] == "InputLayer":
            c["batch_input_shape"] = c.pop("batch_shape")
        if ld["class_name"] == "LeakyReLU":
            c["alpha"] = c.pop("negative_slope")
        c["dtype"] = "float32"
        layers.append({"class_name": ld["class_name"], "config": c, "name": ld["name"],
                       "inbound_nodes": [node(n) for n in ld["inbound_nodes"]]})
    out["config"]["layers"] = layers
    return out


def test_legacy_tf2_layout_with_doubled_names(tmp_path, run_slim):
    inp = keras.Input((6, 6, 2), name="input_1")
    x = L.Conv2D(4, 3, name="conv2d_1", activation="hard_sigmoid")(inp)
    x = L.BatchNormalization(name="batch_normalization_1")(x)
    x = L.LeakyReLU(name="leaky_re_lu_1")(x)
    x = L.Flatten(name="flatten_1")(x)
    out = L.Dense(3, name="dense_1")(x)
    model = KM.randomize(keras.Model(inp, out, name="model_1"), 4)
    model.save(tmp_path / "k3.h5")
    with h5py.File(tmp_path / "k3.h5") as src:
        cfg = json.loads(src.attrs["model_config"])
    tf2 = tmp_path / "tf2.h5"
    with h5py.File(tf2, "w") as dst:
        dst.attrs["model_config"] = json.dumps(_to_tf2_config(cfg)).encode()
        dst.attrs["keras_version"] = b"2.15.0"
        dst.attrs["backend"] = b"tensorflow"
        mw = dst.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([ld.name.encode() for ld in model.layers])
        for layer in model.layers:
            g = mw.create_group(layer.name)
            names = []
            # tf.keras 2: doubled group names, ':0' suffixes, stored in alphabetical order
            for w in sorted(layer.weights, key=lambda w: w.path):
                var = w.path.split("/")[-1] + ":0"
                g.create_dataset(f"{layer.name}/{var}", data=np.asarray(w.numpy()))
            names = [f"{layer.name}/{w.path.split('/')[-1]}:0" for w in layer.weights]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
    m = slimrt.from_keras(tf2)
    assert m.metadata["keras_version"] == "2.15.0"
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32) * 2
    # tf.keras 2's hard_sigmoid is clip(0.2 x + 0.5, 0, 1), not Keras 3's relu6(x + 3) / 6
    inner = keras.Model(inp, model.get_layer("conv2d_1").output)
    conv_lin = model.get_layer("conv2d_1")
    k, bias = conv_lin.get_weights()
    lin_conv = L.Conv2D(4, 3)
    lin = keras.Model(inp, lin_conv(inp))
    lin_conv.set_weights([k, bias])
    pre = _predict(lin, x)[0]
    h = np.clip(0.2 * pre + 0.5, 0, 1)
    rest = keras.Sequential([L.Input(h.shape[1:])] + [model.get_layer(n) for n in
                                                      ("batch_normalization_1", "leaky_re_lu_1", "flatten_1",
                                                       "dense_1")])
    _compare(run_slim(m, x), _predict(rest, h.astype(np.float32)))
    del inner


# ---------------------------------------------------------------- refusals: layers

def test_lambda_layer_is_refused(tmp_path):
    inp = keras.Input((4,))
    out = L.Lambda(lambda t: t * 2, name="double_it")(L.Dense(3)(inp))
    keras.Model(inp, out).save(tmp_path / "lam.keras")
    keras.Model(inp, out).save(tmp_path / "lam.h5")
    for p in ("lam.keras", "lam.h5"):
        with pytest.raises(slimrt.UnsupportedError, match="double_it.*Lambda"):
            slimrt.from_keras(tmp_path / p)


@keras.saving.register_keras_serializable(package="slimrt_test")
class _Scale(keras.layers.Layer):
    def call(self, x):
        return x * 3.0


def test_custom_layer_is_refused(tmp_path):
    inp = keras.Input((4,))
    out = _Scale(name="my_scale")(L.Dense(3)(inp))
    keras.Model(inp, out).save(tmp_path / "custom.keras")
    with pytest.raises(slimrt.UnsupportedError, match="my_scale.*_Scale"):
        slimrt.from_keras(tmp_path / "custom.keras")


def test_custom_class_named_like_a_builtin_is_refused(tmp_path):
    model = keras.Sequential([L.Input((4,)), L.Dense(3, name="d")])
    path = tmp_path / "m.keras"
    model.save(path)

    def edit(cfg):
        ld = cfg["config"]["layers"][1]
        ld["module"] = "evil.layers"
        ld["registered_name"] = "evil>Dense"
    _rewrite_zip(path, tmp_path / "evil.keras", config=edit)
    with pytest.raises(slimrt.UnsupportedError, match="'d' of class 'Dense'.*evil"):
        slimrt.from_keras(tmp_path / "evil.keras")


def test_multi_head_attention_encoder_block(tmp_path, run_slim):
    """A Keras transformer block: MultiHeadAttention (self-attention) + residual + LayerNorm + FFN, weights and
    biases random; one attention node, and the sequence length stays free."""
    inp = keras.Input((None, 32))
    y = L.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")(inp, inp)
    y = L.LayerNormalization()(L.Add()([inp, y]))
    h = L.Dense(32, name="ffn2")(L.Dense(64, activation="relu", name="ffn1")(y))
    model = KM.randomize(keras.Model(inp, L.LayerNormalization()(L.Add()([y, h]))), seed=3)
    rng = np.random.default_rng(4)
    m = _check_roundtrip(model, rng.standard_normal((3, 7, 32)).astype(np.float32), tmp_path, run_slim)
    assert [n.op for n in m.nodes].count("attention") == 1
    x = rng.standard_normal((2, 12, 32)).astype(np.float32)
    _compare(run_slim(m, x), _predict(model, x))


def test_multi_head_attention_cross_key_no_bias(tmp_path, run_slim):
    """query, value and a separate key from three inputs of different widths and lengths, no biases."""
    q, v, k = keras.Input((5, 16)), keras.Input((9, 24)), keras.Input((9, 20))
    y = L.MultiHeadAttention(num_heads=2, key_dim=8, use_bias=False, name="xattn")(q, v, k)
    model = KM.randomize(keras.Model([q, v, k], y), seed=5)
    rng = np.random.default_rng(6)
    x = [rng.standard_normal((3,) + s).astype(np.float32) for s in ((5, 16), (9, 24), (9, 20))]
    _check_roundtrip(model, x, tmp_path, run_slim)


def test_multi_head_attention_refusals(tmp_path):
    """Causal masking and value_dim != key_dim are refused by name, not run wrong."""
    inp = keras.Input((6, 16))
    keras.Model(inp, L.MultiHeadAttention(2, 8, name="causal")(inp, inp, use_causal_mask=True)).save(
        tmp_path / "c.keras")
    with pytest.raises(slimrt.UnsupportedError, match="use_causal_mask"):
        slimrt.from_keras(tmp_path / "c.keras")
    keras.Model(inp, L.MultiHeadAttention(2, 8, value_dim=4, name="vd")(inp, inp)).save(tmp_path / "v.keras")
    with pytest.raises(slimrt.UnsupportedError, match="vd.*value_dim"):
        slimrt.from_keras(tmp_path / "v.keras")


@pytest.mark.parametrize("layer, pattern", [
    (lambda: L.Maximum(name="mx"), "mx.*Maximum"),
    (lambda: L.Dense(3, activation="softplus", name="sp"), "softplus"),
    (lambda: L.Masking(name="msk"), "msk.*Masking"),
    (lambda: L.ReLU(threshold=0.5, name="thr"), "threshold"),
])
def test_unsupported_layers_are_named(layer, pattern, tmp_path):
    inp = keras.Input((4,))
    lay = layer()
    out = lay([inp, inp]) if isinstance(lay, L.Maximum) else lay(inp)
    keras.Model(inp, out).save(tmp_path / "u.keras")
    with pytest.raises(slimrt.UnsupportedError, match=pattern):
        slimrt.from_keras(tmp_path / "u.keras")


def test_embedding_mask_zero_and_channels_first_are_refused(tmp_path):
    inp = keras.Input((5,), dtype="int32")
    keras.Model(inp, L.Embedding(10, 4, mask_zero=True, name="emb")(inp)).save(tmp_path / "e.keras")
    with pytest.raises(slimrt.UnsupportedError, match="emb.*mask_zero"):
        slimrt.from_keras(tmp_path / "e.keras")
    inp = keras.Input((3, 8, 8))
    keras.Model(inp, L.MaxPooling2D(data_format="channels_first", name="cf")(inp)).save(tmp_path / "c.keras")
    with pytest.raises(slimrt.UnsupportedError, match="cf.*channels_first"):
        slimrt.from_keras(tmp_path / "c.keras")


# ---------------------------------------------------------------- refusals: damaged and hostile files

def _rewrite_zip(src, dst, config=None, weights=None, members=None):
    """Copies a .keras zip, editing config.json (fn(dict)) and/or model.weights.h5 (fn(h5py.File))."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    if config is not None:
        cfg = json.loads(files["config.json"])
        config(cfg)
        files["config.json"] = json.dumps(cfg).encode()
    if weights is not None:
        tmp = str(dst) + ".w.h5"
        with open(tmp, "wb") as f:
            f.write(files["model.weights.h5"])
        with h5py.File(tmp, "r+") as h:
            weights(h)
        with open(tmp, "rb") as f:
            files["model.weights.h5"] = f.read()
        os.remove(tmp)
    if members is not None:
        members(files)
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    model = keras.Sequential([L.Input((5,)), L.Dense(4, name="d1"), L.BatchNormalization(name="bn"),
                              L.Dense(3, use_bias=False, name="d2")], name="small")
    KM.randomize(model, 0)
    model.save(d / "s.keras")
    model.save(d / "s.h5")
    return d, model


def test_text_file_renamed_keras(tmp_path):
    p = tmp_path / "notes.keras"
    p.write_text("this is not a model\n" * 10)
    with pytest.raises(slimrt.FormatError, match="not a Keras model"):
        slimrt.from_keras(p)


def test_truncated_zip(small_files, tmp_path):
    d, _ = small_files
    data = (d / "s.keras").read_bytes()
    for cut in (len(data) // 3, len(data) - 30, 100):
        p = tmp_path / f"cut{cut}.keras"
        p.write_bytes(data[:cut])
        with pytest.raises(slimrt.FormatError):
            slimrt.from_keras(p)


def test_flipped_bytes_in_keras_zip_never_crash(small_files, tmp_path):
    d, model = small_files
    data = bytearray((d / "s.keras").read_bytes())
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    want = _predict(model, x)
    rng = np.random.default_rng(1)
    detected = 0
    for pos in rng.choice(len(data), 60, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        p = tmp_path / "flip.keras"
        p.write_bytes(bytes(bad))
        try:
            m = slimrt.from_keras(p)
        except slimrt.FormatError:
            detected += 1
            continue
        _compare(m.run_reference(x), want)  # an undetected flip must be harmless (zip metadata)
    assert detected >= 40  # the CRCs catch every flip in a member's data


def test_flipped_bytes_in_h5(small_files, tmp_path):
    d, _ = small_files
    data = bytearray((d / "s.h5").read_bytes())
    # the superblock signature and the JSON config: always detected
    for pos in (0, 3, data.find(b'"class_name"') + 1):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        (tmp_path / "f.h5").write_bytes(bytes(bad))
        with pytest.raises(slimrt.FormatError):
            slimrt.from_keras(tmp_path / "f.h5")
    # anywhere else: a FormatError or a model, never another exception or a crash
    rng = np.random.default_rng(2)
    for pos in rng.choice(len(data), 80, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        (tmp_path / "f.h5").write_bytes(bytes(bad))
        try:
            slimrt.from_keras(tmp_path / "f.h5").validate()
        except slimrt.FormatError:
            pass


def test_config_referencing_missing_weights(small_files, tmp_path):
    d, _ = small_files
    # a variable deleted from the weights file
    _rewrite_zip(d / "s.keras", tmp_path / "a.keras", weights=lambda h: h.__delitem__("layers/dense/vars/1"))
    with pytest.raises(slimrt.FormatError, match="d1.*missing"):
        slimrt.from_keras(tmp_path / "a.keras")

    # the config asks for a bias the file never stored
    def add_bias(cfg):
        cfg["config"]["layers"][3]["config"]["use_bias"] = True
    _rewrite_zip(d / "s.keras", tmp_path / "b.keras", config=add_bias)
    with pytest.raises(slimrt.FormatError, match="d2.*missing weights"):
        slimrt.from_keras(tmp_path / "b.keras")

    # a whole layer's weights gone from a legacy file
    shutil.copy(d / "s.h5", tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "r+") as h:
        del h["model_weights/bn"]
    with pytest.raises(slimrt.FormatError, match="bn.*missing"):
        slimrt.from_keras(tmp_path / "c.h5")

    # no weights file in the zip at all
    _rewrite_zip(d / "s.keras", tmp_path / "d.keras", members=lambda f: f.pop("model.weights.h5"))
    with pytest.raises(slimrt.FormatError, match="model.weights.h5"):
        slimrt.from_keras(tmp_path / "d.keras")


def test_weights_of_the_wrong_shape(small_files, tmp_path):
    d, _ = small_files

    def units(cfg):
        cfg["config"]["layers"][1]["config"]["units"] = 7
    _rewrite_zip(d / "s.keras", tmp_path / "u.keras", config=units)
    with pytest.raises(slimrt.FormatError, match=r"stored shape \(5, 4\).*\(5, 7\)"):
        slimrt.from_keras(tmp_path / "u.keras")

    def swap(h):
        del h["layers/dense/vars/0"]
        h["layers/dense/vars/0"] = np.zeros((4, 5), np.float32)
    _rewrite_zip(d / "s.keras", tmp_path / "w.keras", weights=swap)
    with pytest.raises(slimrt.FormatError, match="stored shape"):
        slimrt.from_keras(tmp_path / "w.keras")


def test_damaged_multi_head_attention_weights(tmp_path):
    """MultiHeadAttention's sublayer weights: a missing projection, a wrong shape, a forged num_heads and a
    legacy file without its query weights each raise a FormatError naming the layer."""
    inp = keras.Input((6, 16))
    model = keras.Model(inp, L.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(inp, inp))
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    grp = "layers/multi_head_attention"
    _rewrite_zip(tmp_path / "m.keras", tmp_path / "a.keras", weights=lambda h: h.__delitem__(f"{grp}/key_dense"))
    with pytest.raises(slimrt.FormatError, match="mha.*key_dense.*missing"):
        slimrt.from_keras(tmp_path / "a.keras")

    def reshape(h):
        del h[f"{grp}/value_dense/vars/0"]
        h[f"{grp}/value_dense/vars/0"] = np.zeros((16, 2, 4), np.float32)
    _rewrite_zip(tmp_path / "m.keras", tmp_path / "b.keras", weights=reshape)
    with pytest.raises(slimrt.FormatError, match=r"mha.*value_dense.*stored shape \(16, 2, 4\)"):
        slimrt.from_keras(tmp_path / "b.keras")

    def heads(cfg):
        cfg["config"]["layers"][1]["config"]["num_heads"] = 100000
    _rewrite_zip(tmp_path / "m.keras", tmp_path / "c.keras", config=heads)
    with pytest.raises(slimrt.FormatError, match="mha.*stored shape"):
        slimrt.from_keras(tmp_path / "c.keras")

    shutil.copy(tmp_path / "m.h5", tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "r+") as h:
        g = h["model_weights/mha"]
        g.attrs["weight_names"] = [n for n in g.attrs["weight_names"] if "query" not in str(n)]
    with pytest.raises(slimrt.FormatError, match="mha.*query_dense.*missing"):
        slimrt.from_keras(tmp_path / "d.h5")


def test_forged_huge_shapes_are_not_allocated(small_files, tmp_path):
    d, _ = small_files
    n = 200_000

    def cfg(c):
        c["config"]["layers"][0]["config"]["batch_shape"] = [None, n]
        c["config"]["layers"][1]["config"]["units"] = n
        c["config"]["layers"][2]["config"]["units"] = n

    def w(h):  # a 160 GB dataset that occupies no space in the file
        del h["layers/dense/vars/0"]
        del h["layers/dense/vars/1"]
        h["layers/dense/vars"].create_dataset("0", shape=(n, n), dtype="f4", chunks=(1024, 1024))
        h["layers/dense/vars"].create_dataset("1", shape=(n,), dtype="f4", chunks=(1024,))
    _rewrite_zip(d / "s.keras", tmp_path / "huge.keras", config=cfg, weights=w)
    with pytest.raises(slimrt.FormatError, match="cannot be stored"):
        slimrt.from_keras(tmp_path / "huge.keras")


def test_deeply_nested_configs(small_files, tmp_path):
    d, _ = small_files
    _rewrite_zip(d / "s.keras", tmp_path / "deep.keras",
                 members=lambda f: f.__setitem__("config.json", b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(slimrt.FormatError, match="nested"):
        slimrt.from_keras(tmp_path / "deep.keras")

    def nest(cfg):  # 60 Sequential models inside each other
        inner = dict(cfg)
        for _ in range(60):
            inner = {"class_name": "Sequential", "module": "keras", "registered_name": None,
                     "config": {"name": "s", "layers": [inner]}}
        cfg.clear()
        cfg.update({"class_name": "Sequential", "config": {"name": "top", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 5], "name": "i"}}, inner]}})
    _rewrite_zip(d / "s.keras", tmp_path / "nest.keras", config=nest)
    with pytest.raises(slimrt.FormatError, match="nested"):
        slimrt.from_keras(tmp_path / "nest.keras")


def test_files_that_are_not_models(small_files, tmp_path):
    d, model = small_files
    with h5py.File(tmp_path / "data.h5", "w") as h:
        h["x"] = np.arange(10)
    with pytest.raises(slimrt.FormatError, match="not a Keras model"):
        slimrt.from_keras(tmp_path / "data.h5")
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(slimrt.FormatError):
        slimrt.from_keras(tmp_path / "only.weights.h5")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(slimrt.FormatError, match="config.json"):
        slimrt.from_keras(tmp_path / "other.keras")
    _rewrite_zip(d / "s.keras", tmp_path / "layer.keras",
                 config=lambda c: c.update(c["config"]["layers"][1]))
    with pytest.raises(slimrt.FormatError, match="not a Sequential or Functional"):
        slimrt.from_keras(tmp_path / "layer.keras")
    _rewrite_zip(d / "s.keras", tmp_path / "badjson.keras", members=lambda f: f.__setitem__("config.json", b"{x"))
    with pytest.raises(slimrt.FormatError, match="JSON"):
        slimrt.from_keras(tmp_path / "badjson.keras")
    with pytest.raises(FileNotFoundError):
        slimrt.from_keras(tmp_path / "missing.keras")
    with pytest.raises(slimrt.InputError):
        slimrt.from_keras(io.BytesIO(b""))


def test_links_out_of_the_file_are_not_followed(small_files, tmp_path):
    d, _ = small_files
    with h5py.File(tmp_path / "other.h5", "w") as h:
        h.create_group("d1")
    shutil.copy(d / "s.h5", tmp_path / "ext.h5")
    with h5py.File(tmp_path / "ext.h5", "r+") as h:
        names = h["model_weights/d1"].attrs["weight_names"]
        del h["model_weights/d1"]
        h["model_weights/d1"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/d1")
    with pytest.raises(slimrt.FormatError, match="ExternalLink"):
        slimrt.from_keras(tmp_path / "ext.h5")
    assert len(names) == 2


def test_mismatched_weight_slot_is_detected(small_files, tmp_path):
    """Swapping two Dense layers' weight groups: caught by the layer name Keras stores beside the variables."""
    d, _ = small_files

    def w(h):
        h["layers/dense/vars"].attrs["name"] = "d2"
    _rewrite_zip(d / "s.keras", tmp_path / "swap.keras", weights=w)
    with pytest.raises(slimrt.FormatError, match="belongs to layer 'd2'"):
        slimrt.from_keras(tmp_path / "swap.keras")
