"""User models: 'file.py:build' and 'package.module:build' specs."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from parnn.errors import ModelError
from parnn.models import build_model, unit_names

HEADER = "import torch\nfrom torch import nn\n\n"


def _write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def test_file_spec_gets_input_shape_and_num_classes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "mine.py",
        """
        from collections import OrderedDict

        def build(input_shape, num_classes):
            channels, height, width = input_shape
            return nn.Sequential(OrderedDict(
                conv=nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU()),
                head=nn.Sequential(nn.Flatten(), nn.Linear(4 * height * width, num_classes)),
            ))
        """,
    )
    model = build_model(f"{path}:build", input_shape=(3, 8, 8), num_classes=5)
    assert unit_names(model) == ["conv", "head"]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_module_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "userpkg_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _write(
        package,
        "nets.py",
        """
        def build(*, num_classes=10):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="does not take input_shape"):
        model = build_model("userpkg_models.nets:build", input_shape=(1, 8, 8), num_classes=3)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_builder_without_parameters_is_called_bare(tmp_path: Path) -> None:
    path = _write(tmp_path, "bare.py", "def build():\n    return nn.Sequential(nn.Linear(4, 2))\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model(f"{path}:build")  # nothing given, nothing ignored, no warning
    assert len(model) == 1
    with pytest.warns(UserWarning, match="input_shape or num_classes"):
        build_model(f"{path}:build", input_shape=(4,), num_classes=2)


def test_builder_with_var_keywords_gets_both(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "kw.py",
        """
        SEEN = {}

        def build(**kwargs):
            SEEN.update(kwargs)
            return nn.Sequential(nn.Flatten(), nn.Linear(12, kwargs["num_classes"]))
        """,
    )
    model = build_model(f"{path}:build", input_shape=(3, 2, 2), num_classes=4)
    assert model[1].out_features == 4


def test_a_sequential_subclass_is_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "sub.py",
        """
        class Net(nn.Sequential):
            def __init__(self):
                super().__init__(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))

        def build():
            return Net()
        """,
    )
    model = build_model(f"{path}:build")
    assert isinstance(model, nn.Sequential) and len(model) == 3


def test_a_module_with_its_own_forward_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "resnetish.py",
        """
        class Residual(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(4, 4)

            def forward(self, x):
                return x + self.linear(x)

        def build():
            return Residual()
        """,
    )
    with pytest.raises(
        ModelError, match=r"returned Residual \(an nn.Module with its own forward\)"
    ):
        build_model(f"{path}:build")
    with pytest.raises(ModelError, match="nn.Sequential"):
        build_model(f"{path}:build")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def build():\n    return 3\n", "returned int, not a model"),
        ("def build():\n    return nn.Sequential()\n", "empty nn.Sequential"),
        ("def build():\n    raise RuntimeError('boom')\n", "raised RuntimeError: boom"),
        ("build = 7\n", "is a int, not a function"),
        ("def other():\n    pass\n", "has no attribute 'build'"),
        ("import not_a_module_parnn_xyz\n", "importing .* failed: ModuleNotFoundError"),
        ("def build(:\n", "importing .* failed: SyntaxError"),
        ("def build(input_shape):\n    return nn.Sequential()\n", "needs input_shape .* --input"),
    ],
)
def test_user_model_errors_are_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, "bad.py", body)
    with pytest.raises(ModelError, match=message) as error:
        build_model(f"{path}:build")
    assert "\n" not in str(error.value)
    assert "bad.py" in str(error.value)


def test_missing_file_and_module_and_bad_specs(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    with pytest.raises(ModelError, match=f"file {missing} does not exist"):
        build_model(f"{missing}:build")
    with pytest.raises(ModelError, match="no module named 'parnn_no_such_pkg'"):
        build_model("parnn_no_such_pkg.nets:build")
    with pytest.raises(ModelError, match="has no attribute 'nothing_here'"):
        build_model("parnn.models:nothing_here")
    for spec in ("mine.py:", ":build", "mine.py:not-an-identifier"):
        with pytest.raises(ModelError, match="bad user model"):
            build_model(spec)


def test_a_file_loads_as_one_module_per_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "counted.py",
        """
        class Block(nn.Sequential):
            pass

        def build():
            return Block(nn.Linear(2, 2))
        """,
    )
    first = build_model(f"{path}:build")
    second = build_model(f"{path}:build")
    assert type(first).__module__ == type(second).__module__
    assert type(first).__module__.startswith("parnn_user_model_counted_")
