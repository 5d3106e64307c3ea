"""The model registry both backends share: aliases with default arguments, clear errors."""
from __future__ import annotations

import pytest

from posezoo.training.registry import ModelRegistry


@pytest.fixture()
def registry() -> ModelRegistry:
    reg = ModelRegistry(" for the test backend")

    @reg.register("slim")
    def slim(num_keypoints: int, width: float = 1.0, stride: int = 8) -> dict:
        return {"k": num_keypoints, "width": width, "stride": stride}

    reg.register_alias("small", "slim", width=0.5)
    return reg


def test_alias_defaults_apply_and_config_arguments_override_them(registry):
    assert registry.build("small", 3) == ("slim", {"k": 3, "width": 0.5, "stride": 8})
    assert registry.build("small", 3, width=0.75)[1]["width"] == 0.75
    assert registry.build("slim", 3)[1]["width"] == 1.0  # the canonical name keeps its own defaults
    assert registry.arguments("small", {"stride": 4}) == {"width": 0.5, "stride": 4}
    assert registry.names() == ["slim", "small"] and registry.names(include_aliases=False) == ["slim"]


def test_registry_errors_name_the_choices(registry):
    with pytest.raises(ValueError, match=r"unknown model 'big' for the test backend; available: slim, small"):
        registry.build("big", 3)
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['depth'\]; allowed: \['width', 'stride'\]"):
        registry.build("small", 3, depth=2)
    with pytest.raises(ValueError, match="num_keypoints must be a positive int"):
        registry.build("slim", 0)
    with pytest.raises(ValueError, match="alias 'x' points to unknown model 'nope'"):
        registry.register_alias("x", "nope")
    with pytest.raises(ValueError, match="alias 'slim' clashes with a registered model"):
        registry.register_alias("slim", "slim")
