"""The model zoo: published parameter counts, shapes, cuttable units, errors."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from parnn.errors import ModelError
from parnn.models import (
    ModelSpec,
    build_model,
    count_parameters,
    get_model_spec,
    model_names,
    unit_names,
)

ZOO = ("mlp", "lenet5", "alexnet", "vgg16", "resnet50", "mobilenetv2", "dummy16")

# Published counts at the reference configuration (torchvision for the ImageNet models;
# classic LeNet-5 on 28x28 with padding 2).
PUBLISHED = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
    "lenet5": 61_706,
}

UNIT_NAMES = {
    "mlp": ["fc1", "fc2", "fc3", "fc4"],
    "lenet5": ["conv1", "conv2", "fc1", "fc2", "fc3"],
    "alexnet": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"],
    "vgg16": [
        *(
            f"block{b}_{i}"
            for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
            for i in range(1, n + 1)
        ),
        "fc1",
        "fc2",
        "fc3",
    ],
    "resnet50": [
        "conv1",
        *(f"layer{s}_{i}" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for i in range(1, n + 1)),
        "fc",
    ],
    "mobilenetv2": ["conv1", *(f"block{i}" for i in range(1, 18)), "conv2", "fc"],
    "dummy16": [f"block{i}" for i in range(1, 17)],
}

SMALL_INPUTS = ((3, 32, 32), (1, 28, 28))


def _build_meta(name: str, **kwargs: object) -> nn.Sequential:
    with torch.device("meta"):
        return build_model(name, **kwargs)  # type: ignore[arg-type]


def test_registry_lists_the_zoo_with_specs() -> None:
    assert model_names() == ZOO
    for name in ZOO:
        spec = get_model_spec(name)
        assert isinstance(spec, ModelSpec) and spec.name == name and spec.description
        assert callable(spec.builder)
    assert get_model_spec("vgg16").default_input_shape == (3, 224, 224)
    assert get_model_spec("vgg16").default_num_classes == 1000
    assert get_model_spec("lenet5").default_input_shape == (1, 28, 28)
    assert get_model_spec("mlp").default_num_classes == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model_spec("mlp").name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published_architectures(name: str) -> None:
    # On `meta`: the same code path as a real build minus the weight values, so VGG-16's
    # 138M parameters cost nothing; test_meta_and_real_builds_agree covers the equivalence.
    count = count_parameters(_build_meta(name))
    assert abs(count - PUBLISHED[name]) <= 0.005 * PUBLISHED[name]
    assert count == PUBLISHED[name]  # exact, in fact


def test_real_builds_match_published_counts_and_default_shapes() -> None:
    for name in ("lenet5", "mobilenetv2", "resnet50"):
        model = build_model(name)
        assert count_parameters(model) == PUBLISHED[name]
        assert all(not p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_meta_and_real_builds_agree(name: str) -> None:
    shape = (3, 32, 32)
    real = build_model(name, input_shape=shape, num_classes=10)
    meta = _build_meta(name, input_shape=shape, num_classes=10)
    assert [(n, p.shape) for n, p in real.named_parameters()] == [
        (n, p.shape) for n, p in meta.named_parameters()
    ]


@pytest.mark.parametrize("name", ZOO)
def test_units_are_named_and_stable(name: str) -> None:
    model = _build_meta(name)
    assert type(model) is nn.Sequential
    assert unit_names(model) == UNIT_NAMES[name]
    assert len(model) == len(UNIT_NAMES[name])


@pytest.mark.parametrize("name", ZOO)
def test_forward_shape_at_default_input(name: str) -> None:
    spec = get_model_spec(name)
    model = _build_meta(name).eval()
    out = model(torch.empty((2, *spec.default_input_shape), device="meta"))
    assert tuple(out.shape) == (2, spec.default_num_classes)


@pytest.mark.parametrize("shape", SMALL_INPUTS)
@pytest.mark.parametrize("name", ZOO)
def test_forward_at_small_inputs_real(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, input_shape=shape, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mlp", (1, 8, 8)), ("mlp", (64,)), ("dummy16", (64,)), ("resnet50", (1, 8, 8))],
)
def test_tiny_inputs_where_sensible(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, input_shape=shape, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize(("name", "smallest"), [("lenet5", 12), ("alexnet", 15)])
def test_too_small_inputs_name_the_minimum(name: str, smallest: int) -> None:
    with pytest.raises(ModelError, match=f"at least {smallest} "):
        build_model(name, input_shape=(1, smallest - 1, smallest - 1))
    with pytest.raises(ModelError, match=name):
        build_model(name, input_shape=(1, 8, 8))
    model = _build_meta(name, input_shape=(1, smallest, smallest))
    assert model(torch.empty((1, 1, smallest, smallest), device="meta")).shape == (
        1,
        10 if name == "lenet5" else 1000,
    )


def test_alexnet_keeps_the_imagenet_stem_from_63_pixels() -> None:
    conv1 = _build_meta("alexnet", input_shape=(3, 63, 63))[0].conv
    assert conv1.stride == (4, 4) and conv1.kernel_size == (11, 11)
    small = _build_meta("alexnet", input_shape=(3, 62, 62))[0].conv
    assert small.stride == (1, 1) and small.kernel_size == (11, 11)


def test_head_is_sized_to_the_input() -> None:
    # VGG-16 flattens what its features give: 512x7x7 at 224, 512x1x1 at 32.
    assert _build_meta("vgg16")[-3].linear.in_features == 512 * 7 * 7
    assert _build_meta("vgg16", input_shape=(3, 32, 32))[-3].linear.in_features == 512
    assert _build_meta("alexnet")[5].linear.in_features == 256 * 6 * 6
    assert build_model("lenet5")[2].linear.in_features == 16 * 5 * 5


def test_dropout_and_batch_norm_as_published() -> None:
    def kinds(name: str) -> set[type]:
        return {type(m) for m in _build_meta(name, input_shape=(3, 32, 32)).modules()}

    assert nn.Dropout in kinds("alexnet") and nn.Dropout in kinds("vgg16")
    assert nn.BatchNorm2d not in kinds("vgg16")
    assert nn.BatchNorm2d in kinds("resnet50") and nn.BatchNorm2d in kinds("mobilenetv2")


def test_dummy16_units_are_identical() -> None:
    model = build_model("dummy16")
    counts = [count_parameters(unit) for unit in model]
    assert counts[:15] == [1024 * 1024 + 1024] * 15
    assert counts[15] == counts[0] + 1024 * 10 + 10  # plus the classifier
    x = torch.randn(2, 1, 32, 32)
    for unit in model[:15]:
        x = unit(x)
        assert x.shape == (2, 1024)
    # Any input fits: the first unit resizes it to 1024 features, without parameters.
    for shape in ((3, 32, 32), (1, 8, 8), (10,)):
        other = build_model("dummy16", input_shape=shape)
        assert [count_parameters(unit) for unit in other] == counts
        assert other[0](torch.randn(2, *shape)).shape == (2, 1024)


def _small_input(name: str) -> tuple[int, ...]:
    return (1, 28, 28) if name in ("mlp", "lenet5") else (3, 32, 32)


@pytest.mark.parametrize("name", ZOO)
def test_every_contiguous_cut_is_a_stage(name: str) -> None:
    shape = _small_input(name)
    model = build_model(name, input_shape=shape, num_classes=10).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        activations = [x]  # activations[k]: the input of unit k
        for unit in model:
            out = unit(activations[-1])
            assert isinstance(out, torch.Tensor)  # one tensor in, one tensor out
            activations.append(out)
        full = model(x)
        torch.testing.assert_close(activations[-1], full)
        # Every slice is an nn.Sequential stage that maps its first input to its last output.
        # Checked in full on the cheap models; the others run each single-unit stage (the
        # chain above) and a three-stage pipeline.
        count = len(model)
        exhaustive = name in ("mlp", "lenet5")
        for start in range(count):
            for stop in range(start + 1, count + 1):
                stage = model[start:stop]
                assert isinstance(stage, nn.Sequential) and len(stage) == stop - start
                if exhaustive or stop == start + 1:
                    torch.testing.assert_close(stage(activations[start]), activations[stop])
        third = count // 3
        out = x
        for stage in (model[:third], model[third : 2 * third], model[2 * third :]):
            out = stage(out)
        torch.testing.assert_close(out, full)


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2", "resnet50"])
def test_units_leave_their_input_untouched(name: str) -> None:
    # A pipeline stage keeps its input for the backward pass: no unit may overwrite it.
    shape = _small_input(name)
    model = build_model(name, input_shape=shape, num_classes=10)
    x = torch.randn(4, *shape)
    for unit in model:
        before = x.clone()
        out = unit(x)
        torch.testing.assert_close(x, before, rtol=0, atol=0)
        x = out.detach()


@pytest.mark.parametrize("name", ["lenet5", "mobilenetv2"])
def test_cut_backward_equals_full_backward(name: str) -> None:
    shape = _small_input(name)
    full = build_model(name, input_shape=shape, num_classes=10)
    split = copy.deepcopy(full)
    x, y = torch.randn(4, *shape), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)  # the same dropout masks in both runs
    nn.functional.cross_entropy(full(x), y).backward()
    torch.manual_seed(1)
    cut = len(split) // 2
    boundary = split[:cut](x)
    received = boundary.detach().requires_grad_()  # what the next stage gets
    nn.functional.cross_entropy(split[cut:](received), y).backward()
    boundary.backward(received.grad)
    for (name_a, a), (name_b, b) in zip(
        full.named_parameters(), split.named_parameters(), strict=True
    ):
        assert name_a == name_b
        torch.testing.assert_close(a.grad, b.grad)


def test_same_seed_same_weights_and_meta_dry_runs_leave_the_generator_alone() -> None:
    torch.manual_seed(3)
    first = build_model("lenet5")
    after_first = torch.rand(1)
    torch.manual_seed(3)
    second = build_model("lenet5")
    assert torch.equal(torch.rand(1), after_first)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(4)
    third = build_model("lenet5")
    assert not torch.equal(next(first.parameters()), next(third.parameters()))


def test_count_parameters_counts_shared_weights_once() -> None:
    linear = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(linear, nn.ReLU(), linear)) == 20


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet51'") as error:
        build_model("resnet51")
    for name in ZOO:
        assert name in str(error.value)
    with pytest.raises(ModelError, match="mobilenetv2"):
        get_model_spec("nope")


@pytest.mark.parametrize(
    "shape",
    [(3, 32), (1, 1, 28, 28), (0, 28, 28), (1, -28, 28), "1x28x28", (1.5, 28, 28), (), None],
)
def test_bad_input_shapes(shape: object) -> None:
    if shape is None:  # None means "the default", which is fine
        assert len(build_model("lenet5", input_shape=None)) == 5
        return
    with pytest.raises(ModelError, match="bad input shape"):
        build_model("lenet5", input_shape=shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("classes", [0, -1, True, 2.5])
def test_bad_number_of_classes(classes: object) -> None:
    with pytest.raises(ModelError, match="bad number of classes"):
        build_model("mlp", num_classes=classes)  # type: ignore[arg-type]
