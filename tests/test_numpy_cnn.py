"""The numpy CNN: every backward checked by finite differences and against PyTorch, and a real training run."""

import numpy as np
import pytest
import torch

from core.datasets import load_split
from experiments.adapters.numpy_adapter import NumpyLearner
from experiments.data import scale_images
from experiments.models import tiny
from experiments.numpy_cnn import Conv3x3, Dense, MaxPool2, SoftmaxCrossEntropy, TinyNumpyCNN, sgd_step
from experiments.train import evaluate, train_epoch


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-30))


def numeric_gradient(f, array: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of `array` (changed in place)."""
    grad = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        saved = array[i]
        array[i] = saved + h
        plus = f()
        array[i] = saved - h
        minus = f()
        array[i] = saved
        grad[i] = (plus - minus) / (2 * h)
    return grad


def check_layer(layer, x: np.ndarray, rng) -> None:
    """With L = sum(forward(x) * R), backward(R) must give dL/dx and dL/dparams."""
    r = rng.standard_normal(layer.forward(x).shape)
    loss = lambda: float((layer.forward(x) * r).sum())  # noqa: E731
    loss()
    d_x = layer.backward(r)
    assert relative_error(d_x, numeric_gradient(loss, x)) < 1e-6
    for name, value in layer.params().items():
        loss()
        layer.backward(r)
        analytic = layer.grads[name].copy()
        assert relative_error(analytic, numeric_gradient(loss, value)) < 1e-6, name


def test_conv_gradients(rng):
    check_layer(Conv3x3(3, rng), rng.standard_normal((2, 6, 7)), rng)


def test_maxpool_gradients(rng):
    check_layer(MaxPool2(), rng.standard_normal((2, 3, 4, 6)), rng)


def test_dense_gradients(rng):
    check_layer(Dense(12, 4, rng), rng.standard_normal((2, 3, 2, 2)), rng)


def test_softmax_cross_entropy_gradient(rng):
    logits, labels = rng.standard_normal((3, 10)), np.array([1, 0, 9])
    loss = SoftmaxCrossEntropy()
    f = lambda: loss.forward(logits, labels)  # noqa: E731
    f()
    assert relative_error(loss.backward(), numeric_gradient(f, logits)) < 1e-6


def test_whole_net_gradients(rng):
    net = TinyNumpyCNN(filters=2, seed=1)
    images, labels = rng.standard_normal((2, 28, 28)), np.array([3, 7])
    net.loss_and_grads(images, labels)
    analytic = {k: v.copy() for k, v in net.gradient_arrays().items()}
    for name, value in net.parameter_arrays().items():
        numeric = numeric_gradient(lambda: net.loss.forward(net.forward(images), labels), value)
        assert relative_error(analytic[name], numeric) < 1e-6, name


def torch_twin(net: TinyNumpyCNN) -> torch.nn.Module:
    """The PyTorch `tiny` model in float64 carrying the numpy net's weights."""
    model = tiny().double()
    params = net.parameter_arrays()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(params["conv.filters"][:, None]))
        model[3].weight.copy_(torch.from_numpy(params["dense.weights"].T))
        model[3].bias.copy_(torch.from_numpy(params["dense.biases"]))
    return model


@pytest.fixture(scope="module")
def mnist_batch(mnist_dir):
    train = load_split("mnist", "train", mnist_dir)
    return scale_images(train.images[:4], "centered", np.float64)[:, 0], train.labels[:4].astype(np.int64)


def test_forward_and_gradients_equal_pytorch(mnist_batch):
    images, labels = mnist_batch  # real digits: flat background pixels make max-pool ties
    net = TinyNumpyCNN(seed=3)
    model = torch_twin(net)
    loss, logits = net.loss_and_grads(images, labels)
    torch_logits = model(torch.from_numpy(images[:, None]))
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, torch.from_numpy(labels))
    torch_loss.backward()
    np.testing.assert_allclose(logits, torch_logits.detach().numpy(), rtol=0, atol=1e-8)
    assert loss == pytest.approx(torch_loss.item(), abs=1e-8)
    grads = net.gradient_arrays()
    np.testing.assert_allclose(grads["conv.filters"], model[0].weight.grad[:, 0].numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads["dense.weights"], model[3].weight.grad.T.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads["dense.biases"], model[3].bias.grad.numpy(), rtol=0, atol=1e-8)


def test_three_sgd_steps_keep_weights_equal_to_pytorch(mnist_batch):
    images, labels = mnist_batch
    net = TinyNumpyCNN(seed=4)
    model = torch_twin(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    for step in range(3):
        x, y = images[step : step + 1], labels[step : step + 1]
        net.loss_and_grads(x, y)
        sgd_step(net.layers, lr=0.005)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x[:, None])), torch.from_numpy(y)).backward()
        optimizer.step()
    after = torch_twin(net)
    for ours, theirs in zip(after.parameters(), model.parameters(), strict=True):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=0, atol=1e-8)
    assert not np.allclose(net.parameter_arrays()["dense.biases"], 0)  # the steps did move the weights


def test_one_epoch_on_1k_mnist_reaches_70_percent(mnist_dir):
    train, test = (
        load_split("mnist", "train", mnist_dir).first(1000),
        load_split("mnist", "test", mnist_dir).first(1000),
    )
    learner = NumpyLearner(TinyNumpyCNN(seed=0), lr=0.005)
    x_train = learner.to_inputs(scale_images(train.images, "centered", np.float64))
    train_epoch(
        learner,
        x_train,
        learner.to_labels(train.labels),
        batch_size=1,
        rng=np.random.default_rng(0),
        log_every=100,
        progress=False,
    )
    result = evaluate(learner, learner.to_inputs(scale_images(test.images, "centered", np.float64)), test.labels)
    assert result.acc >= 0.70


def test_maxpool_ties_route_the_gradient_like_pytorch(rng):
    x = rng.integers(0, 2, (2, 3, 4, 4)).astype(np.float64)  # many windows with tied maxima
    d_out = rng.standard_normal((2, 3, 2, 2))
    pool = MaxPool2()
    pool.forward(x)
    x_torch = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool2d(x_torch, 2).backward(torch.from_numpy(d_out))
    np.testing.assert_array_equal(pool.backward(d_out), x_torch.grad.numpy())
