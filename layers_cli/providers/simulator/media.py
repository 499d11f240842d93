"""Media for the offline simulator: looking at images, drawing PNGs, embedding text.

Everything here is deterministic and works without a network or a model, so that vision,
image-generation and embedding requests answer offline with output that is *about* the input
(the colour a picture really has, a PNG that looks like its prompt, vectors that are closer for
similar texts). Pillow is imported inside functions so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import hashlib
import io
import math
import random
import re
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from layers_cli.errors import InvalidRequest

# Named colours in tie-break order, each with the (light, dark) ends of the gradient that
# `make_png` paints; both ends (and the blend between them) classify as the name itself.
PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "red": ((235, 40, 35), (185, 20, 25)),
    "orange": ((250, 150, 40), (225, 110, 20)),
    "yellow": ((255, 230, 70), (235, 195, 25)),
    "green": ((90, 200, 80), (30, 130, 50)),
    "cyan": ((80, 220, 230), (20, 160, 180)),
    "blue": ((70, 120, 235), (25, 55, 170)),
    "purple": ((160, 90, 220), (100, 40, 150)),
    "pink": ((250, 140, 190), (225, 80, 150)),
    "brown": ((160, 100, 50), (110, 65, 30)),
    "black": ((40, 40, 45), (10, 10, 12)),
    "white": ((255, 255, 255), (232, 232, 236)),
    "gray": ((160, 160, 165), (110, 110, 115)),
}
# Words a prompt may use for a palette colour.
_SYNONYMS = {
    "grey": "gray", "silver": "gray", "crimson": "red", "scarlet": "red", "ruby": "red",
    "navy": "blue", "azure": "blue", "teal": "cyan", "turquoise": "cyan", "aqua": "cyan",
    "gold": "yellow", "golden": "yellow", "lemon": "yellow", "emerald": "green",
    "lime": "green", "violet": "purple", "lavender": "purple", "magenta": "pink",
    "chocolate": "brown", "tan": "brown", "amber": "orange",
}  # fmt: skip
_COLOUR_WORDS = re.compile(r"\b(" + "|".join([*PALETTE, *_SYNONYMS]) + r")\b", re.IGNORECASE)

MIN_SIDE, MAX_SIDE = 64, 4096
_MAX_DESCRIBE_PIXELS = 64_000_000  # refuse to decode decompression bombs
_SAMPLE_SIDE = 64  # colour statistics come from a copy at most this big


def colour_name(r: int, g: int, b: int) -> str:
    """The palette name a person would give an sRGB colour (hue bands on HSV)."""
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    h *= 360
    if max(r, g, b) - min(r, g, b) < 30 or s < 0.15:
        return "white" if v > 0.82 else "black" if v < 0.2 else "gray"
    if v < 0.2:
        return "black"
    if h < 15 or h >= 335:
        return "pink" if s < 0.5 and v > 0.7 else "red"
    if h < 45:
        return "brown" if v < 0.65 or (s < 0.5 and v < 0.85) else "orange"
    if h < 70:
        return "yellow"
    if h < 160:
        return "green"
    if h < 200:
        return "cyan"
    if h < 255:
        return "blue"
    if h < 290:
        return "purple"
    return "purple" if v < 0.6 else "pink"


# ---------------------------------------------------------------------------- describing


def describe_image(url: str) -> dict[str, Any]:
    """Size, format and dominant colour of an ``image_url``; http(s) URLs are not fetched."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("image_url must be a non-empty URL string.", param="messages")
    head = url[:8].lower()
    if head.startswith(("http://", "https://")):
        return {"format": None, "url": url, "fetched": False}
    if not head.startswith("data:"):
        raise InvalidRequest(
            "image_url must be an http(s) URL or a data: URL "
            "(for example data:image/png;base64,...).",
            param="messages",
        )
    return _describe_bytes(_decode_data_url(url))


def _decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:`` URL, tolerant of whitespace, url-safe and unpadded base64."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise _undecodable("a data: URL needs a ',' before its payload")
    params = [p.strip().lower() for p in header.split(";")]
    if "base64" in params[1:]:
        if "%" in payload:
            payload = unquote(payload)
        payload = "".join(payload.split()).replace("-", "+").replace("_", "/")
        payload += "=" * (-len(payload) % 4)
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _undecodable(f"invalid base64 ({exc})") from None
    else:
        raw = unquote_to_bytes(payload)
    if not raw:
        raise _undecodable("the data: URL is empty")
    return raw


def _undecodable(why: str) -> InvalidRequest:
    return InvalidRequest(
        f"image_url could not be decoded: {why}.",
        hint="Send a base64 PNG, JPEG, GIF or WebP as data:image/...;base64,...",
        param="messages",
    )


def _describe_bytes(raw: bytes) -> dict[str, Any]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, (width, height), mode = img.format, img.size, img.mode
            if width * height > _MAX_DESCRIBE_PIXELS:
                raise InvalidRequest(
                    f"image_url is too large to inspect ({width}×{height} pixels).",
                    hint="Send an image of at most 64 megapixels.",
                    param="messages",
                )
            frames = getattr(img, "n_frames", 1)
            img.draft("RGB", (_SAMPLE_SIDE, _SAMPLE_SIDE))  # JPEG: decode at reduced scale
            stats = _dominant(img)
    except InvalidRequest:
        raise
    except Exception as exc:  # Pillow raises many types for hostile or truncated bytes
        raise _undecodable(f"not a readable image ({exc})") from None
    info: dict[str, Any] = {"format": fmt, "width": width, "height": height, "mode": mode}
    info.update(stats)
    if frames > 1:
        info["frames"] = frames
    return info


def _dominant(img: Any) -> dict[str, Any]:
    """Name the most frequent palette bucket of a downscaled copy; hex is that bucket's mean."""
    from PIL import Image

    alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    img = img.convert("RGBA" if alpha else "RGB")
    w, h = img.size
    scale = min(1.0, _SAMPLE_SIDE / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, Image.Resampling.BOX)
    colours = img.getcolors(img.width * img.height) or []
    opaque = [(n, px) for n, px in colours if not alpha or px[3] >= 128]
    extra: dict[str, Any] = {}
    if not opaque:  # nothing visible: describe the hidden colours, but say so
        opaque, extra = colours, {"transparent": True}
    buckets: dict[str, list[int]] = {}  # name -> [count, sum r, sum g, sum b]
    cache: dict[tuple[int, int, int], str] = {}
    for n, px in opaque:
        rgb = px[:3]
        name = cache.get(rgb) or cache.setdefault(rgb, colour_name(*rgb))
        acc = buckets.setdefault(name, [0, 0, 0, 0])
        acc[0] += n
        for i in range(3):
            acc[i + 1] += n * rgb[i]
    order = list(PALETTE)
    best = max(buckets, key=lambda k: (buckets[k][0], -order.index(k)))
    n, *sums = buckets[best]
    hexcode = "#" + "".join(f"{round(s / n):02x}" for s in sums)
    return {"dominant_color": best, "hex": hexcode, **extra}


def describe_image_text(info: dict[str, Any]) -> str:
    """One sentence about an image, for the simulator's replies."""
    if info.get("format") is None:
        url = str(info.get("url") or "")
        shown = url if len(url) <= 120 else url[:117] + "..."
        return f"an image at {shown} (not fetched: the simulator works offline)"
    w, h = info.get("width"), info.get("height")
    article = "an" if str(w).startswith("8") or w in (11, 18) else "a"
    what = f"{article} {w}×{h} {info['format']} image"
    if info.get("transparent"):
        return f"a fully transparent {w}×{h} {info['format']} image"
    if info.get("frames", 1) > 1:
        what = f"{article} {w}×{h} animated {info['format']} image of {info['frames']} frames"
    return f"{what} whose dominant colour is {info['dominant_color']} ({info['hex']})"


# ---------------------------------------------------------------------------- drawing


def parse_size(size: str | None, default: tuple[int, int] = (1024, 1024)) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` → (width, height); ``None``/``"auto"`` → ``default``."""
    if size is None or (isinstance(size, str) and size.strip().lower() == "auto"):
        return default
    match = None
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*", size, re.IGNORECASE)
    if match is None:
        raise InvalidRequest(
            f"size must look like '1024x1024' or be 'auto', not {size!r}.", param="size"
        )
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(
            f"size {width}x{height} is out of range: each side must be "
            f"between {MIN_SIDE} and {MAX_SIDE} pixels.",
            param="size",
        )
    return width, height


def prompt_colours(prompt: str) -> list[str]:
    """Palette colours a prompt names, in order of first mention."""
    names: list[str] = []
    for word in _COLOUR_WORDS.findall(prompt or ""):
        name = _SYNONYMS.get(word.lower(), word.lower())
        if name not in names:
            names.append(name)
    return names


def make_png(prompt: str, width: int, height: int, seed: int = 0) -> bytes:
    """A real PNG that looks like its prompt: the named colour dominates a gradient with shapes."""
    from PIL import Image, ImageChops, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"size {width}x{height} is out of range.", param="size")
    digest = hashlib.blake2b(f"{prompt}\0{width}x{height}\0{seed}".encode(), digest_size=16)
    rng = random.Random(digest.digest())
    named = prompt_colours(prompt)
    if named:
        light, dark = PALETTE[named[0]]
    else:  # no colour named: a hue from the prompt alone, so a prompt keeps its colour
        hue = hashlib.blake2b((prompt or "").encode(), digest_size=2).digest()
        hue_f = int.from_bytes(hue, "big") / 65536
        light = _hsv(hue_f, 0.65, 0.9)
        dark = _hsv(hue_f, 0.8, 0.6)
    if len(named) > 1:
        accent = PALETTE[named[1]][0]
    else:
        others = [k for k in PALETTE if k not in named[:1]]
        accent = PALETTE[rng.choice(others)][0]

    # Diagonal gradient: mean of a vertical ramp and a horizontal one, flipped by the seed.
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    across = Image.linear_gradient("L").transpose(Image.Transpose.TRANSPOSE)
    across = across.resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        across = across.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mix = ImageChops.add(ramp, across, scale=2.0)
    pairs = zip(light, dark, strict=True)
    bands = [mix.point([lo + (hi - lo) * i // 255 for i in range(256)]) for lo, hi in pairs]
    img = Image.merge("RGB", bands)

    # A few shapes in the accent colour, small enough that the main colour still dominates.
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    for _ in range(rng.randint(3, 5)):
        r = int(side * rng.uniform(0.04, 0.11))
        cx, cy = rng.randrange(width), rng.randrange(height)
        box = (cx - r, cy - r, cx + r, cy + r)
        kind = rng.choice(("ellipse", "rectangle", "triangle"))
        if kind == "ellipse":
            draw.ellipse(box, fill=accent)
        elif kind == "rectangle":
            draw.rectangle(box, fill=accent)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=accent)
    draw.line(
        [(0, height * 2 // 3), (width, height * 2 // 3)], fill=accent, width=max(1, side // 128)
    )

    meta = PngInfo()
    meta.add_text("Software", "Layers offline simulator")
    meta.add_itxt("Description", (prompt or "")[:1000])
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1, pnginfo=meta)
    return out.getvalue()


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


# ---------------------------------------------------------------------------- embedding

_WORD = re.compile(r"\w+")
_WEIGHTS = {"w": 1.0, "b": 0.7, "c": 0.3}  # unigrams, bigrams, character trigrams


@lru_cache(maxsize=65536)
def _feature_hash(feature: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")


def embed_text(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector by signed feature hashing; similar texts share features."""
    if not isinstance(dimensions, int) or dimensions < 1:
        raise InvalidRequest(
            f"dimensions must be a positive integer, not {dimensions!r}.", param="dimensions"
        )
    lowered = " ".join((text or "").lower().split())
    words = _WORD.findall(lowered)
    counts: dict[str, float] = {}
    for w in words:
        counts["w" + w] = counts.get("w" + w, 0.0) + 1.0
    for a, b in zip(words, words[1:], strict=False):
        key = f"b{a} {b}"
        counts[key] = counts.get(key, 0.0) + 1.0
    padded = f" {lowered} " if lowered else ""
    for i in range(len(padded) - 2):
        key = "c" + padded[i : i + 3]
        counts[key] = counts.get(key, 0.0) + 1.0

    vec = [0.0] * dimensions
    for feature, n in counts.items():
        h = _feature_hash(feature)
        weight = _WEIGHTS[feature[0]] * (1.0 + math.log(n))  # sublinear: repeats count less
        vec[(h >> 1) % dimensions] += weight if h & 1 else -weight
    norm = math.sqrt(math.fsum(x * x for x in vec))
    if norm == 0.0:  # empty text (or a perfect cancellation): a fixed one-hot vector
        vec = [0.0] * dimensions
        vec[_feature_hash("\0empty") % dimensions] = 1.0
        return vec
    return [x / norm for x in vec]
