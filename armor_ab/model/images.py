"""Image tensors in and out: ViT preprocessing for the understanding path, VQGAN pixels to PIL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

# InternVL normalises with ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_image(image: Image.Image | torch.Tensor, size: int) -> torch.Tensor:
    """A PIL image, or a (3, H, W) tensor (uint8 0..255 or float 0..1), -> normalised (3, size, size).

    One square tile resized to the ViT's input size; InternVL's dynamic high-resolution tiling is not done.
    """
    if isinstance(image, Image.Image):
        image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
        x = x.permute(2, 0, 1).float() / 255.0  # (3, S, S)
    else:
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor, got {tuple(x.shape)}")
        if x.shape[1:] != (size, size):
            x = F.interpolate(x[None], size=(size, size), mode="bicubic", align_corners=False)[0]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x.clamp(0, 1) - mean) / std  # (3, S, S)


def pixels_to_pil(pixels: torch.Tensor) -> Image.Image:
    """VQGAN output (3, H, W) in [-1, 1] -> RGB PIL image."""
    x = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (3, H, W)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().cpu().numpy())  # (H, W, 3) uint8 -> RGB
