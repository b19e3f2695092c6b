"""image_sanity: every picture decodes, has the model's size, is not blank, and is not a near-duplicate of
another item's picture.

* decodes: ``PageImage.pil`` is None when the bytes are not a picture (or the stored file is missing);
* size: ``CheckContext.image_size`` (width, height), the size the model draws, when the context knows it;
* blank: the standard deviation of the grey levels (0-255) under ``min_stddev`` (default 6): an empty or
  nearly uniform picture. Measured: the demo model's 41 pictures of the demo items are at 32.6 or more
  (median 58.8), drawn catalog pictures at 28 or more (the smallest, palest product on a dark background),
  a uniform picture with Gaussian noise of sigma 4 at 2.7, a uniform JPEG at 0;
* near-duplicate: the 64-bit perceptual hash (``imagehash.phash``: the signs of the 8 x 8 lowest
  frequencies of the picture's DCT, grey levels only) is at most ``max_duplicate_distance`` bits (Hamming
  distance) from the hash of a picture of ANOTHER item: one registered in ``CheckContext.picture_hashes``
  (the batch's own pictures by ``prepare``; pages stored before the batch by the content layer, with
  ``register_pictures``). Both pages of a pair fail, whichever is checked first; pictures of the same
  item never count as duplicates of each other (an item's page may show it twice, a re-generated page
  may repeat the old one's picture).

The threshold (``max_duplicate_distance``, default 4). Measured on the demo model (``armor-demo``): 82
pictures it drew for the 42 demo items (two pages per item, "Describe {name} for our catalog, with
pictures.", seeds 0.. and 1000..), and copies of each:

* copies of one picture, distance to the original (max / 95th percentile): PNG re-saved 0 / 0, JPEG quality
  90 2 / 2, quality 75 4 / 2, quality 50 4 / 4, brightness +10 % 4 / 2, contrast -10 % 2 / 2, Gaussian noise
  sigma 4 2 / 2 (sigma 8: 6 / 4), down-sampled to 48 px and back 2 / 2;
* the same copies moved (shift by 1 px: median 4, max 18; cropped by 2 px and scaled back: median 6, max 12)
  or mirrored (median 30) are NOT caught at any threshold that spares different items: the hash is not
  made for geometric changes, and at 64 x 64 one pixel is a large move;
* pictures of two different items (3,280 pairs): minimum 0, 1st percentile 10, 5th 18, median 28; 4 pairs
  within 4 bits, 8 within 6, 20 within 8. The pairs within 4 bits are pictures the model drew alike for two
  items of the same shape and pose (e.g. pumps-01 and pumps-06: distance 0, mean pixel difference 7.7 of
  255; their catalog photos, which differ only in colour, are 2 bits apart): real near-duplicates to a
  shopper, since the hash does not see colour and the demo model draws nearly grey pictures.

So 4 catches every re-encoding and mild edit measured and flags 0.1 % of different-item pairs, all of them
pictures one cannot tell apart. 6 would also catch heavy noise and flag 0.2 %; -1 turns the check off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import imagehash
import numpy as np
from PIL import Image

from armor_ab.experiments.content_checks import ImageSanityPolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page, PageImage
from armor_ab.guardrails.result import CheckResult, Evidence

NAME = "image_sanity"
HASH_BITS = 64
# ctx.cache[(OWNERS, sha256)]: every item whose page holds that exact picture (picture_hashes keeps one).
OWNERS = "image_sanity.owners"


def picture_hash(image: Image.Image) -> int:
    """The 64-bit perceptual hash (``imagehash.phash``, 8 x 8) of a picture, as an integer."""
    bits = imagehash.phash(image, hash_size=8).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def register_pictures(ctx: CheckContext, item_id: str, images: Iterable[PageImage]) -> None:
    """Add ``item_id``'s pictures to the duplicate index (``ctx.picture_hashes``): the content layer calls
    this for pages stored before a batch; ``prepare`` for the batch's own. Pictures that do not decode are
    left out (the check reports them on their own page)."""
    for image in images:
        known = ctx.picture_hashes.get(image.sha256)
        if known is None:
            pil = image.pil
            if pil is None:
                continue
            ctx.picture_hashes[image.sha256] = (item_id, picture_hash(pil))
        owners = ctx.cache.setdefault((OWNERS, image.sha256), set())
        if isinstance(owners, set):
            owners.add(item_id)
            if known is not None:
                owners.add(known[0])


def prepare(pages: Sequence[Page], policy: ImageSanityPolicy, ctx: CheckContext) -> None:
    """Register every picture of the batch before any page is checked, so a duplicate pair fails on both
    pages whatever their order."""
    for page in pages:
        register_pictures(ctx, page.item.id, page.images)


def _owners(ctx: CheckContext, sha256: str) -> set[str]:
    owners = ctx.cache.get((OWNERS, sha256))
    return set(owners) if isinstance(owners, set) and owners else {ctx.picture_hashes[sha256][0]}


INDEX = "image_sanity.index"


def _hash_array(ctx: CheckContext) -> tuple[list[str], np.ndarray]:
    """Every registered hash as one array, built once per state of the index (the index only grows, so
    its size tells when it changed), not once per picture checked."""
    cached = ctx.cache.get((INDEX, ""))
    if isinstance(cached, tuple) and len(cached[0]) == len(ctx.picture_hashes):
        return cached
    shas = list(ctx.picture_hashes)
    built = (shas, np.array([ctx.picture_hashes[s][1] for s in shas], dtype=np.uint64))
    ctx.cache[(INDEX, "")] = built
    return built


def _nearest_other(ctx: CheckContext, item_id: str, value: int) -> tuple[int, str] | None:
    """(distance, other item id) of the closest registered picture of another item, or None."""
    best: tuple[int, str] | None = None
    if not ctx.picture_hashes:
        return None
    shas, hashes = _hash_array(ctx)
    # Popcount of the XOR, per hash (np.bitwise_count needs numpy 2; this runs on 1.26 too).
    distances = np.unpackbits((hashes ^ np.uint64(value)).view(np.uint8)).reshape(len(shas), 64).sum(axis=1)
    for index in np.argsort(distances, kind="stable"):
        others = sorted(_owners(ctx, shas[index]) - {item_id})
        if others:
            best = (int(distances[index]), others[0])
            break
    return best


def grey_stddev(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L"), dtype=np.float64).std())


def run(page: Page, policy: ImageSanityPolicy, ctx: CheckContext) -> CheckResult:
    if not page.images:
        return CheckResult(NAME, "pass", "no pictures to check")
    problems: list[str] = []
    evidence: list[Evidence] = []
    for index, image in enumerate(page.images):
        label = f"picture {index + 1}"
        pil = image.pil
        if pil is None:
            what = "is missing from the image store" if not image.png else "does not decode"
            problems.append(f"{label} {what}")
            evidence.append(Evidence(f"{label} ({image.sha256[:12]}) {what}", image=index))
            continue
        if ctx.image_size is not None and pil.size != tuple(ctx.image_size):
            w, h = ctx.image_size
            problems.append(f"{label} is {pil.size[0]}x{pil.size[1]}, not the model's {w}x{h}")
            evidence.append(Evidence(f"{label} is {pil.size[0]}x{pil.size[1]} pixels, expected {w}x{h}",
                                     image=index))
        stddev = grey_stddev(pil)
        if stddev < policy.min_stddev:
            problems.append(f"{label} is blank (grey-level standard deviation {stddev:.1f} < "
                            f"{policy.min_stddev:g})")
            evidence.append(Evidence(f"{label} is blank or nearly uniform", image=index, score=round(stddev, 2)))
        if policy.max_duplicate_distance >= 0:
            known = ctx.picture_hashes.get(image.sha256)
            value = known[1] if known is not None else picture_hash(pil)
            nearest = _nearest_other(ctx, page.item.id, value)
            if nearest is not None and nearest[0] <= policy.max_duplicate_distance:
                distance, other = nearest
                problems.append(f"{label} is a near-duplicate of a picture of item {other} ({distance} of "
                                f"{HASH_BITS} bits apart, at most {policy.max_duplicate_distance} allowed)")
                evidence.append(Evidence(f"{label} is a near-duplicate of a picture of item {other}", image=index,
                                         score=float(distance)))
    if problems:
        return CheckResult(NAME, "fail", "; ".join(problems), tuple(evidence))
    n = len(page.images)
    size = f" at {ctx.image_size[0]}x{ctx.image_size[1]}" if ctx.image_size is not None else ""
    duplicates = ", no other item's picture" if policy.max_duplicate_distance >= 0 else ""
    return CheckResult(NAME, "pass", f"{n} picture{'s' if n != 1 else ''} decode{'s' if n == 1 else ''}{size}, "
                       f"not blank{duplicates}")


CHECK = Check(NAME, run, "pictures decode at the model's size, are not blank, and are no other item's picture",
              prepare)
