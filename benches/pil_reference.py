"""The Python references' one preprocessing: a Lookout recipe (the bundle header's / run.json's `preprocess`
object, as JSON) applied with PIL and numpy the way torchvision's reference does it.

Shared by `extract_reference.py`, `edge_reference.py` and `int8_experiment.py`, so the three compare lookout
against the same Python pipeline. Needs numpy and PIL (the callers check and skip where they are missing).
"""
import numpy as np
from PIL import Image

# The `tf-inception` preset of lookout-shared: shorter side 256, centre crop 224, pixels to -1..1.
TF_INCEPTION = {"resize": {"ShorterSide": 256}, "crop": [224, 224], "input_scale": 255.0,
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def preprocess_image(img, recipe):
    """RGB PIL image -> [3, H, W] float32 (contiguous): shorter side to the recipe's size (PIL's bilinear,
    antialiased when downscaling), centre crop, x / input_scale, (x - mean) / std, channels first."""
    short = recipe["resize"]["ShorterSide"]
    crop_h, crop_w = recipe["crop"]
    w, h = img.size
    s = short / min(w, h)
    img = img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    img = img.crop((left, top, left + crop_w, top + crop_h))
    x = np.asarray(img, dtype=np.float32) / float(recipe["input_scale"])
    x = (x - np.asarray(recipe["mean"], np.float32)) / np.asarray(recipe["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_file(path, recipe):
    """`preprocess_image` of the file at `path`, converted to RGB."""
    return preprocess_image(Image.open(path).convert("RGB"), recipe)
