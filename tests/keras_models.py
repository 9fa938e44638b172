"""Keras model builders for the importer tests (and benchmarks): small, seeded, non-trivial weights.

Every builder returns ``(model, make_inputs)``: a built Keras 3 model whose every weight was
drawn at random (BatchNormalization included: gamma, beta, moving mean and variance all
differ from their defaults, so a wrongly mapped BN fails the comparison) and a function
``make_inputs(rng, batch)`` giving inputs the model accepts.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402


def _keras():
    import keras

    return keras


def randomize(model, seed=0):
    """Sets every weight to a seeded random value; BN statistics stay in a plausible range."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        ws = layer.get_weights()
        if not ws:
            continue
        cls = type(layer).__name__
        new = []
        for i, w in enumerate(ws):
            path = layer.weights[i].path.split("/")[-1]
            if cls == "BatchNormalization" or cls == "LayerNormalization":
                if path in ("gamma",):
                    v = rng.uniform(0.5, 1.5, w.shape)
                elif path in ("beta", "moving_mean"):
                    v = rng.normal(0, 0.5, w.shape)
                elif path == "moving_variance":
                    v = rng.uniform(0.5, 2.0, w.shape)
                else:
                    v = rng.normal(0, 0.5, w.shape)
            elif cls == "PReLU":
                v = rng.uniform(0.05, 0.5, w.shape)
            elif cls == "Normalization":
                v = w  # adapted statistics
            else:
                fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
                scale = 1.0 / np.sqrt(max(fan_in, 1)) if w.ndim > 1 else 0.2
                v = rng.normal(0, scale * 1.2, w.shape)
            new.append(np.asarray(v, dtype=w.dtype))
        layer.set_weights(new)
    return model


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential"):
            yield from _all_layers(layer)
        else:
            yield layer


def _floats(shape):
    return lambda rng, n: rng.standard_normal((n,) + tuple(shape)).astype(np.float32)


# ---- the ten architectures ----

def mlp(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([L.Input((784,)), L.Dense(300, activation="relu"), L.Dense(100, activation="relu"),
                          L.Dense(10, activation="softmax")], name="mlp")
    return randomize(m, seed), _floats((784,))


def lenet5(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="tanh"),
        L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="tanh"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="tanh"),
        L.Dense(84, activation="tanh"),
        L.Dense(10),
        L.Softmax(),
    ], name="lenet5")
    return randomize(m, seed), _floats((28, 28, 1))


def vgg(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([
        L.Input((20, 20, 3)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(32, activation="relu"),
        L.Dropout(0.5),
        L.Dense(10),
    ], name="vgg")
    return randomize(m, seed), _floats((20, 20, 3))


def resnet(seed=0):
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((15, 15, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    # identity block
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(8, 3, padding="same")(y)
    y = L.BatchNormalization(epsilon=1e-5)(y)
    x = L.ReLU()(L.Add()([x, y]))
    # projection block, stride 2 on an odd size (asymmetric "same" pads)
    y = L.Conv2D(16, 3, strides=2, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(16, 3, padding="same")(y)
    y = L.BatchNormalization(center=False)(y)
    s = L.Conv2D(16, 1, strides=2)(x)
    s = L.BatchNormalization(scale=False)(s)
    x = L.ReLU()(L.Add()([s, y]))
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10)(x)
    return randomize(keras.Model(inp, out, name="resnet"), seed), _floats((15, 15, 3))


def mobilenet_v2(seed=0):
    keras = _keras()
    L = keras.layers

    def block(x, expand, out_ch, stride, name, zero_pad=False):
        c = x.shape[-1]
        y = L.Conv2D(c * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        y = L.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = L.ReLU(6.0, name=f"{name}_expand_relu")(y)
        if zero_pad:  # Keras' MobileNetV2 style: explicit pad + valid depthwise conv
            y = L.ZeroPadding2D(((0, 1), (0, 1)))(y)
            y = L.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=False, name=f"{name}_dw")(y)
        else:
            y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
        y = L.BatchNormalization(name=f"{name}_dw_bn")(y)
        y = L.Activation("relu6", name=f"{name}_dw_relu")(y)
        y = L.Conv2D(out_ch, 1, use_bias=False, name=f"{name}_project")(y)
        y = L.BatchNormalization(name=f"{name}_project_bn")(y)
        if stride == 1 and c == out_ch:
            y = L.Add(name=f"{name}_add")([x, y])
        return y

    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = block(x, 1, 8, 1, "b1")
    x = block(x, 4, 12, 2, "b2")
    x = block(x, 4, 12, 1, "b3")
    x = block(x, 4, 16, 2, "b4", zero_pad=True)
    x = block(x, 4, 16, 1, "b5")
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10, activation="softmax")(x)
    return randomize(keras.Model(inp, out, name="mobilenet_v2"), seed), _floats((16, 16, 3))


def xception(seed=0):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((17, 17, 3))
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for ch in (16, 24):
        res = L.Conv2D(ch, 1, strides=2, padding="same", use_bias=False)(x)
        res = L.BatchNormalization()(res)
        y = L.SeparableConv2D(ch, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.SeparableConv2D(ch, 3, padding="same", depth_multiplier=2)(y)
        y = L.BatchNormalization()(y)
        y = L.MaxPooling2D(3, strides=2, padding="same")(y)
        x = L.Add()([y, res])
    x = L.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(5)(x)
    return randomize(keras.Model(inp, out, name="xception"), seed), _floats((17, 17, 3))


def conv1d(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([
        L.Input((37, 4)),
        L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
        L.Conv1D(8, 5, strides=2, padding="same", activation="swish"),
        L.MaxPooling1D(2),
        L.Conv1D(12, 3, padding="valid", groups=4),
        L.AveragePooling1D(3, strides=2, padding="same"),
        L.SeparableConv1D(16, 3, padding="same", activation="gelu"),
        L.DepthwiseConv1D(3, depth_multiplier=2, padding="same"),
        L.GlobalMaxPooling1D(),
        L.Dense(6),
    ], name="conv1d_net")
    return randomize(m, seed), _floats((37, 4))


def prelu_pool(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([
        L.Input((15, 15, 3)),
        L.Conv2D(8, 3),
        L.PReLU(shared_axes=[1, 2]),
        L.MaxPooling2D(3, strides=2, padding="same"),
        L.Conv2D(12, 3, padding="same"),
        L.PReLU(),
        L.AveragePooling2D(2, padding="same"),
        L.Flatten(),
        L.Dense(16),
        L.PReLU(),
        L.Dense(4),
    ], name="prelu_net")
    return randomize(m, seed), _floats((15, 15, 3))


def permute_flatten(seed=0):
    keras = _keras()
    L = keras.layers
    m = keras.Sequential([
        L.Input((9, 7, 3)),
        L.Conv2D(5, 3, activation="relu"),
        L.Permute((3, 1, 2)),
        L.Flatten(),
        L.Dense(8, activation="tanh"),
        L.Dense(3),
    ], name="permute_net")
    return randomize(m, seed), _floats((9, 7, 3))


def concat_branches(seed=0):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((12, 12, 4))
    a = L.Conv2D(6, 1, activation="relu")(inp)
    b = L.Conv2D(4, 1, activation="relu")(inp)
    b = L.Conv2D(6, 3, padding="same", activation="relu")(b)
    c = L.MaxPooling2D(3, strides=1, padding="same")(inp)
    c = L.Conv2D(5, 1)(c)
    x = L.Concatenate()([a, b, c])
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="elu")(x)
    p = L.GlobalAveragePooling2D()(x)
    q = L.GlobalMaxPooling2D()(x)
    x = L.Concatenate(axis=1)([p, q])
    out = L.Dense(7)(x)
    return randomize(keras.Model(inp, out, name="inception"), seed), _floats((12, 12, 4))


def layernorm_embedding(seed=0):
    keras = _keras()
    L = keras.layers
    inp = keras.Input((11,), dtype="int32", name="tokens")
    x = L.Embedding(50, 16)(inp)
    x = L.LayerNormalization()(x)
    h = L.Dense(32, activation="gelu")(x)
    h = L.Dense(16)(h)
    x = L.Add()([x, h])
    x = L.LayerNormalization(epsilon=1e-5)(x)
    x = L.GlobalAveragePooling1D()(x)
    out = L.Dense(5)(x)

    def make(rng, n):
        return rng.integers(0, 50, (n, 11)).astype(np.int32)

    return randomize(keras.Model(inp, out, name="tiny_transformer"), seed), make


ARCHITECTURES = {
    "mlp": mlp, "lenet5": lenet5, "vgg": vgg, "resnet": resnet, "mobilenet_v2": mobilenet_v2,
    "xception": xception, "conv1d": conv1d, "prelu_pool": prelu_pool, "permute_flatten": permute_flatten,
    "concat_branches": concat_branches, "layernorm_embedding": layernorm_embedding,
}
