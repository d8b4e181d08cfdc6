"""The tiny CNN from scratch in numpy: Conv 3x3 -> MaxPool 2 -> Dense -> softmax cross-entropy.

Each layer keeps its forward and backward side by side. forward(x) caches what backward needs;
backward(dL/dout) returns dL/din and stores the parameter gradients in `.grads`. The optimizer
(sgd_step) is kept apart from the layers. Arrays are batch-first, channels before pixels
(B, C, H, W), the same layout as PyTorch, so the two can be compared weight for weight.
Everything is vectorised over the batch and the pixels (im2col as 9 shifted copies).
"""

import numpy as np


class Conv3x3:
    """n_filters 3x3 filters, 'valid' padding, no bias; one input channel. (B, H, W) -> (B, F, H-2, W-2)."""

    def __init__(self, n_filters: int, rng: np.random.Generator, dtype=np.float64):
        self.filters = (rng.standard_normal((n_filters, 3, 3)) / 9).astype(dtype)  # the tutorial's init
        self.grads = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """out[b, f, i, j] = sum_kl w[f, k, l] x[b, i+k, j+l]: one matmul of filters by shifted images.

        columns[3k + l] is the image shifted by (k, l), so together they hold every 3x3 patch (im2col).
        """
        self.input_shape = x.shape
        h, w = x.shape[1] - 2, x.shape[2] - 2
        self.columns = np.stack([x[:, k : k + h, l : l + w] for k in range(3) for l in range(3)])  # (9, B, h, w)
        out = np.tensordot(self.filters.reshape(len(self.filters), 9), self.columns, axes=(1, 0))  # (F, B, h, w)
        return out.transpose(1, 0, 2, 3)

    def backward(self, d_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """dL/dw[f,k,l] = sum_bij dL/dout[b,f,i,j] x[b,i+k,j+l]; dL/dx[b,i+k,j+l] += dL/dout[b,f,i,j] w[f,k,l]."""
        d_filters = np.tensordot(d_out, self.columns, axes=([0, 2, 3], [1, 2, 3]))  # (F, 9)
        self.grads = {"filters": d_filters.reshape(self.filters.shape)}
        if not need_input_grad:
            return None
        d_columns = np.tensordot(self.filters.reshape(len(self.filters), 9), d_out, axes=(0, 1))  # (9, B, h, w)
        d_x = np.zeros(self.input_shape, dtype=d_out.dtype)
        h, w = d_out.shape[2:]
        for kl, d_column in enumerate(d_columns):  # 9 shifted slab additions, not a loop over pixels
            k, l = divmod(kl, 3)
            d_x[:, k : k + h, l : l + w] += d_column
        return d_x

    def params(self) -> dict:
        return {"filters": self.filters}


class MaxPool2:
    """2x2 max pooling, stride 2. (B, F, H, W) -> (B, F, H/2, W/2)."""

    OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # a window's pixels in row-major order

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Each output is the max of its 2x2 window; the first max (row-major, as PyTorch) is remembered."""
        self.input_shape = x.shape
        corners = [x[:, :, i::2, j::2] for i, j in self.OFFSETS]
        out = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
        self.winner = np.select([c == out for c in corners[:3]], [0, 1, 2], default=3)
        return out

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        """dL/dx is dL/dout at the window's max and 0 elsewhere (max passes the gradient to its winner)."""
        d_x = np.zeros(self.input_shape, dtype=d_out.dtype)
        for position, (i, j) in enumerate(self.OFFSETS):
            d_x[:, :, i::2, j::2] = np.where(self.winner == position, d_out, 0)
        return d_x

    def params(self) -> dict:
        return {}


class Dense:
    """Fully connected layer on the flattened input: out = flatten(x) @ W + b."""

    def __init__(self, input_len: int, nodes: int, rng: np.random.Generator, dtype=np.float64):
        self.weights = (rng.standard_normal((input_len, nodes)) / input_len).astype(dtype)  # the tutorial's init
        self.biases = np.zeros(nodes, dtype=dtype)
        self.grads = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input_shape = x.shape
        self.flat = x.reshape(len(x), -1)
        return self.flat @ self.weights + self.biases

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        """dL/dW = flat^T dL/dout; dL/db = sum over batch of dL/dout; dL/dx = dL/dout W^T."""
        self.grads = {"weights": self.flat.T @ d_out, "biases": d_out.sum(axis=0)}
        return (d_out @ self.weights.T).reshape(self.input_shape)

    def params(self) -> dict:
        return {"weights": self.weights, "biases": self.biases}


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels."""

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """L = mean_b(-log p[b, y_b]), p = softmax(logits), computed with the max shifted out."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        self.probs = exp / exp.sum(axis=1, keepdims=True)
        self.labels = labels
        return float(-np.mean(np.log(self.probs[np.arange(len(labels)), labels])))

    def backward(self) -> np.ndarray:
        """dL/dlogits = (p - onehot(y)) / B."""
        d_logits = self.probs.copy()
        d_logits[np.arange(len(self.labels)), self.labels] -= 1
        return d_logits / len(self.labels)


def sgd_step(layers: dict, lr: float) -> None:
    """Plain SGD, in place: p <- p - lr * dL/dp for every parameter of every layer."""
    for layer in layers.values():
        for name, value in layer.params().items():
            value -= lr * layer.grads[name]


class TinyNumpyCNN:
    """Conv 3x3 x filters -> MaxPool 2 -> Dense 10, trained with softmax cross-entropy."""

    def __init__(self, filters: int = 8, seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.layers = {
            "conv": Conv3x3(filters, rng, self.dtype),
            "pool": MaxPool2(),
            "dense": Dense(13 * 13 * filters, 10, rng, self.dtype),
        }
        self.loss = SoftmaxCrossEntropy()

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Logits (B, 10) of images (B, 28, 28)."""
        x = images
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def backward(self, d_logits: np.ndarray) -> None:
        d = self.layers["dense"].backward(d_logits)
        d = self.layers["pool"].backward(d)
        self.layers["conv"].backward(d, need_input_grad=False)  # nothing below the first layer

    def loss_and_grads(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, loss and backward; the gradients are left in each layer's .grads. Returns loss, logits."""
        logits = self.forward(images)
        loss = self.loss.forward(logits, labels)
        self.backward(self.loss.backward())
        return loss, logits

    def parameter_arrays(self) -> dict:
        return {f"{name}.{p}": value for name, layer in self.layers.items() for p, value in layer.params().items()}

    def gradient_arrays(self) -> dict:
        return {f"{name}.{p}": layer.grads[p] for name, layer in self.layers.items() for p in layer.params()}

    def layer_rows(self) -> list[dict]:
        """The per-layer table, in experiments.adapters.LAYER_COLUMNS."""
        filters = len(self.layers["conv"].filters)
        shapes = {"conv": (filters, 26, 26), "pool": (filters, 13, 13), "dense": (10,)}
        types = {"conv": "Conv3x3", "pool": "MaxPool2", "dense": "Dense"}
        return [
            {
                "layer": name,
                "type": types[name],
                "output_shape": "x".join(map(str, shapes[name])),
                "activations": int(np.prod(shapes[name])),
                "params": sum(v.size for v in layer.params().values()),
            }
            for name, layer in self.layers.items()
        ]
