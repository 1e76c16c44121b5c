"""The colorization experiment's photos (train_colorize.py): which photographs of which
Debian wallpaper packages it trains on, which it never sees (kept for evaluation), and how to
read them.

Torch-free, so the held-out photos can be read with the engine's own environment.
The packages are fetched with apt at TRAINING time only (models/train/README.md gives the
commands and sha256 of each .deb); ``root`` is a folder holding their extracted ``usr/`` trees.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.train.photos import read_photo

# the photographs (not the drawings) of each package
PLASMA = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "FallenLeaf", "Kite",
          "OneStandsOut", "Volna", "summer_1am"]
BUDGIE = ["beacon-street-sunset", "blue-periwinkle", "canyon-wren", "casa-mila", "extreme-desert-hike",
          "lake-sherburne", "perched-osprey", "piazza-gae-aulenti", "pondering-heron",
          "singaporean-cityscape", "sunning-anhinga", "the-spices-of-life"]
LOMIRI = ["Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
          "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
          "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
          "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
          "sunset_by_Aitzol_Berasategi"]
TRAIN = [(n, "plasma") for n in PLASMA] + [(n, "budgie") for n in BUDGIE] + [(n, "lomiri") for n in LOMIRI]
# development: watched during training to keep the weights that generalise best (early stopping);
# never trained on, and not in the benchmark's figures
DEV = {"perched-shrike": "budgie", "EveningGlow": "plasma"}
# evaluation only (models/train/README.md, "Automatic colorization"), never trained on:
# animal, architecture, landscape, forest
HELD_OUT = {"oakland-zoo-otters": "budgie", "roman-colosseum": "budgie", "tea-gardens": "budgie",
            "Path": "plasma"}


def wallpaper_path(root: Path, name: str, package: str) -> Path:
    """Where a photo of ``package`` lies under the extracted packages' root."""
    if package == "plasma":
        imgs = sorted((root / "usr/share/wallpapers" / name / "contents/images").iterdir(),
                      key=lambda p: -int(p.stem.split("x")[0]))
        return imgs[0]                                    # the largest
    if package == "budgie":
        return root / "usr/share/backgrounds/budgie" / f"{name}.jxl"
    return root / "usr/share/backgrounds" / f"{name}.jpg"


def wallpaper(root: Path, name: str, package: str) -> np.ndarray:
    p = wallpaper_path(root, name, package)
    if not p.exists():
        raise SystemExit(f"missing {p}: extract the wallpaper packages (models/train/README.md)")
    return read_photo(p)
