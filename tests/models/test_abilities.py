"""Optional abilities are protocols: a model has one exactly when it defines all of the protocol's members."""

from __future__ import annotations

import pytest
import torch

from parcae_runner.models import ARCHITECTURES, build_model
from parcae_runner.models.abilities import OwnFlopCount, SampledDepth, SenseVectors

ABILITIES = (SampledDepth, SenseVectors, OwnFlopCount)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_an_ability_is_all_of_its_members_or_none(name):
    with torch.device("meta"):
        model = build_model({"name": name}, "debug", 64)
    for ability in ABILITIES:
        members = [m for m in vars(ability) if not m.startswith("_")] + list(ability.__annotations__)
        present = [hasattr(model, m) for m in members]
        assert isinstance(model, ability) == all(present), (ability.__name__, members, present)
        assert all(present) or not any(p for m, p in zip(members, present, strict=True) if m != "embed"), ability


def test_the_studies_abilities():
    with torch.device("meta"):
        looped, backpack, plain = (build_model({"name": n}, "debug", 64) for n in ("parcae", "backpack", "pythia"))
    assert isinstance(looped, SampledDepth) and isinstance(looped, OwnFlopCount)
    assert isinstance(backpack, SenseVectors)
    assert not any(isinstance(plain, a) for a in ABILITIES)
