"""Every shipped recipe builds its model and runs a cadence through it at the recipe's input size."""

from pathlib import Path

import numpy as np
import pytest
import torch

from src.core.cadence import CADENCE_SHAPE
from src.core.config import load_config
from src.models.classifier import build_model
from src.transforms.images import cadence_to_image

RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_recipes_the_readme_promises_exist():
    names = {p.name for p in RECIPES}
    assert {"demo_cpu.yaml", "detection_cpu.yaml", "swin_tiny.yaml", "nfnet_l0_1st.yaml", "effnet_b5_2nd.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_model_accepts_its_input(recipe: Path):
    cfg = load_config(recipe, {"pretrained": None})
    cadence = np.random.default_rng(0).standard_normal(CADENCE_SHAPE).astype(np.float16)
    image = cadence_to_image(cadence, cfg.view, cfg.normalize, cfg.image_size)
    model = build_model(cfg).eval()
    with torch.no_grad():
        logits = model(image[None])["logits"]
    assert logits.shape == (1,) and torch.isfinite(logits).all()
