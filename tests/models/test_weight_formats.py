"""Weight formats are declared on the architecture spec: init_from, its validation and export ask the registry."""

from __future__ import annotations

import pytest
import torch

from parcae_runner.config.validate import _check_init_source
from parcae_runner.models import ARCHITECTURES, build_model
from parcae_runner.models.formats import export_format, format_names, init_file_problem, load_weight_file


def _with_format() -> tuple[str, str]:
    """An architecture that declares a weight format, and one of its formats' names."""
    name = next(n for n, a in sorted(ARCHITECTURES.items()) if a.formats)
    return name, ARCHITECTURES[name].formats[0].name


def _without_format() -> str:
    return next(n for n, a in sorted(ARCHITECTURES.items()) if not a.formats)


def test_every_declared_format_is_listed_and_unique_per_architecture():
    for arch in ARCHITECTURES.values():
        names = [f.name for f in arch.formats]
        assert len(names) == len(set(names)), arch.name
        assert set(names) <= set(format_names())
        for fmt in arch.formats:
            assert fmt.suffix.startswith(".") and fmt.description
            assert export_format(arch.name, fmt.name) is fmt


def test_a_file_the_architecture_does_not_declare_is_refused_naming_its_formats(tmp_path):
    name, fmt_name = _with_format()
    fmt = export_format(name, fmt_name)
    model = build_model({"name": name}, "debug", 64)
    path = fmt.export(model, tmp_path / f"m{fmt.suffix}")
    assert init_file_problem(str(path), name) is None
    assert _check_init_source(str(path), name) == []

    other = _without_format()
    (error,) = _check_init_source(str(path), other)
    assert error.key == "train.init_from" and f"arch={other}" in str(error) and "weight formats: none" in str(error)
    with pytest.raises(ValueError, match=f"arch={other}"):
        load_weight_file(build_model({"name": other}, "debug", 64), str(path))
    with pytest.raises(ValueError, match=f"arch={other} has no {fmt_name} format"):
        export_format(other, fmt_name)
    (missing,) = _check_init_source(str(tmp_path / f"absent{fmt.suffix}"), name)
    assert "no such" in str(missing)


def test_a_declared_file_initialises_the_model(tmp_path):
    name, fmt_name = _with_format()
    fmt = export_format(name, fmt_name)
    torch.manual_seed(0)
    source = build_model({"name": name}, "debug", 64)
    path = fmt.export(source, tmp_path / f"m{fmt.suffix}")
    torch.manual_seed(1)
    target = build_model({"name": name}, "debug", 64)
    assert load_weight_file(target, str(path))
    for (key, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    assert not load_weight_file(target, str(tmp_path))
