"""The simulator's media helpers on real image bytes made with Pillow."""

from __future__ import annotations

import base64
import io
import math

import pytest
from PIL import Image, features

from layers_cli.errors import InvalidRequest
from layers_cli.providers.simulator.media import (
    PALETTE,
    describe_image,
    describe_image_text,
    embed_text,
    make_png,
    parse_size,
)


def data_url(img: Image.Image, fmt: str, **save: object) -> str:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    mime = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def png_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def split_image(size: tuple[int, int], first: str, second: str, share: float) -> Image.Image:
    """``share`` of the width in ``first``, the rest in ``second``."""
    img = Image.new("RGB", size, second)
    img.paste(first, (0, 0, round(size[0] * share), size[1]))
    return img


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------- describe_image


def test_solid_red_png() -> None:
    info = describe_image(data_url(Image.new("RGB", (40, 30), (255, 0, 0)), "PNG"))
    assert info == {
        "format": "PNG",
        "width": 40,
        "height": 30,
        "mode": "RGB",
        "dominant_color": "red",
        "hex": "#ff0000",
    }
    assert describe_image_text(info) == ("a 40×30 PNG image whose dominant colour is red (#ff0000)")


def test_solid_jpeg_is_close_to_its_colour() -> None:
    info = describe_image(data_url(Image.new("RGB", (640, 480), (0, 90, 255)), "JPEG"))
    assert (info["format"], info["width"], info["height"]) == ("JPEG", 640, 480)
    assert info["dominant_color"] == "blue"
    r, g, b = (int(info["hex"][i : i + 2], 16) for i in (1, 3, 5))
    assert abs(r - 0) <= 4 and abs(g - 90) <= 4 and abs(b - 255) <= 4


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((255, 0, 0), "red"),
        ((255, 140, 0), "orange"),
        ((255, 230, 0), "yellow"),
        ((0, 160, 0), "green"),
        ((0, 220, 230), "cyan"),
        ((20, 40, 220), "blue"),
        ((128, 0, 128), "purple"),
        ((255, 105, 180), "pink"),
        ((139, 69, 19), "brown"),
        ((5, 5, 5), "black"),
        ((250, 250, 250), "white"),
        ((128, 128, 128), "gray"),
    ],
)
def test_palette_names(rgb: tuple[int, int, int], name: str) -> None:
    info = describe_image(data_url(Image.new("RGB", (16, 16), rgb), "PNG"))
    assert info["dominant_color"] == name
    assert info["hex"] == "#{:02x}{:02x}{:02x}".format(*rgb)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_majority_colour_wins(fmt: str) -> None:
    img = split_image((200, 100), "blue", "white", 0.6)
    assert describe_image(data_url(img, fmt))["dominant_color"] == "blue"
    img = split_image((200, 100), "blue", "white", 0.4)
    assert describe_image(data_url(img, fmt))["dominant_color"] == "white"


def test_large_image_is_sampled_and_keeps_its_size() -> None:
    img = split_image((3000, 2000), "green", "black", 0.7)
    info = describe_image(data_url(img, "JPEG", quality=85))
    assert (info["width"], info["height"], info["dominant_color"]) == (3000, 2000, "green")


def test_transparent_pixels_are_ignored() -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((255, 200, 0, 255), (0, 0, 30, 30))  # 9% visible, all yellow
    info = describe_image(data_url(img, "PNG"))
    assert (info["mode"], info["dominant_color"]) == ("RGBA", "yellow")


def test_gif_and_palette_mode() -> None:
    img = Image.new("RGB", (50, 20), (0, 200, 0)).convert("P")
    info = describe_image(data_url(img, "GIF"))
    assert (info["format"], info["mode"], info["dominant_color"]) == ("GIF", "P", "green")


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp() -> None:
    info = describe_image(data_url(Image.new("RGB", (33, 17), (200, 0, 200)), "WEBP"))
    assert (info["format"], info["width"], info["height"]) == ("WEBP", 33, 17)


def test_tolerant_base64_variants() -> None:
    url = data_url(Image.new("RGB", (8, 8), "red"), "PNG")
    header, payload = url.split(",", 1)
    unpadded = payload.rstrip("=")
    wrapped = "\n".join(unpadded[i : i + 20] for i in range(0, len(unpadded), 20))
    assert describe_image(f"{header},{wrapped}")["dominant_color"] == "red"
    assert describe_image(f"DATA:image/png;BASE64,{payload}")["format"] == "PNG"


def test_http_url_is_not_fetched() -> None:
    url = "https://example.com/cat.png"
    info = describe_image(url)
    assert info == {"format": None, "url": url, "fetched": False}
    assert describe_image_text(info) == (
        "an image at https://example.com/cat.png (not fetched: the simulator works offline)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64",  # no comma
        "data:image/png;base64,",  # empty
        "data:image/png;base64,@@@not base64@@@",
        "data:image/png;base64," + base64.b64encode(b"hello, not an image").decode(),
        "data:image/png;base64,"  # a truncated PNG
        + base64.b64encode(make_png("red", 64, 64)[:200]).decode(),
        "data:text/plain,hello",
        "ftp://example.com/cat.png",
        "",
    ],
)
def test_bad_image_urls(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        describe_image(url)
    assert caught.value.param == "messages"
    assert caught.value.status == 400
    if url.startswith("data:"):
        assert caught.value.message.startswith("image_url could not be decoded: ")


# ---------------------------------------------------------------------------- make_png


def test_make_png_is_a_real_png_of_the_exact_size() -> None:
    png = make_png("a lighthouse at dusk", 320, 200)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        img.load()
        assert (img.format, img.size, img.mode) == ("PNG", (320, 200), "RGB")
        assert len(img.getcolors(320 * 200) or []) > 10  # a pattern, not a flat fill


def test_make_png_is_deterministic() -> None:
    assert make_png("a red fox", 256, 256, seed=7) == make_png("a red fox", 256, 256, seed=7)
    assert make_png("a red fox", 256, 256, seed=7) != make_png("a red fox", 256, 256, seed=8)
    assert make_png("a red fox", 256, 256) != make_png("a red fox", 256, 128)
    assert make_png("a red fox", 256, 256) != make_png("a red cat", 256, 256)


@pytest.mark.parametrize("name", list(PALETTE))
def test_make_png_colour_round_trips(name: str) -> None:
    for seed, size in [(0, (64, 64)), (1, (512, 288)), (2, (100, 700))]:
        info = describe_image(png_url(make_png(f"a {name} bird in the sky", *size, seed=seed)))
        assert (info["width"], info["height"]) == size
        assert info["dominant_color"] == name


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("A RED FOX", "red"),
        ("blue ocean", "blue"),
        ("a grey cat on a white wall", "gray"),
        ("crimson sunset", "red"),
        ("teal lagoon", "cyan"),
    ],
)
def test_make_png_first_named_colour_dominates(prompt: str, name: str) -> None:
    assert describe_image(png_url(make_png(prompt, 200, 200)))["dominant_color"] == name


def test_make_png_without_colour_words_keeps_a_colour_per_prompt() -> None:
    first = describe_image(png_url(make_png("quarterly report", 128, 128, seed=1)))
    again = describe_image(png_url(make_png("quarterly report", 128, 128, seed=2)))
    assert first["dominant_color"] == again["dominant_color"]


# ---------------------------------------------------------------------------- parse_size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1024x1024", (1024, 1024)),
        ("1792x1024", (1792, 1024)),
        ("512X768", (512, 768)),
        (" 64 x 4096 ", (64, 4096)),
        ("auto", (1024, 1024)),
        ("AUTO", (1024, 1024)),
        (None, (1024, 1024)),
    ],
)
def test_parse_size(size: str | None, expected: tuple[int, int]) -> None:
    assert parse_size(size) == expected


def test_parse_size_default() -> None:
    assert parse_size(None, default=(512, 512)) == (512, 512)
    assert parse_size("auto", default=(1536, 1024)) == (1536, 1024)


@pytest.mark.parametrize(
    "size", ["", "big", "1024", "1024x", "x1024", "10x1024", "1024x5000", "-5x64", "1.5x64", 1024]
)
def test_parse_size_rejects(size: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_size(size)  # type: ignore[arg-type]
    assert caught.value.param == "size"


# ---------------------------------------------------------------------------- embed_text


@pytest.mark.parametrize("dims", [1, 3, 256, 1536, 3072])
def test_embedding_is_a_unit_vector_of_the_right_size(dims: int) -> None:
    vec = embed_text("The quick brown fox jumps over the lazy dog.", dims)
    assert len(vec) == dims
    assert all(isinstance(x, float) for x in vec)
    assert abs(math.sqrt(math.fsum(x * x for x in vec)) - 1.0) < 1e-9


def test_embedding_is_deterministic() -> None:
    assert embed_text("hello world", 512) == embed_text("hello world", 512)
    assert embed_text("hello world", 512) != embed_text("goodbye world", 512)


def test_similar_texts_are_closer() -> None:
    base = embed_text("the cat sat on the mat", 1536)
    near = cosine(base, embed_text("a cat sat on a mat", 1536))
    far = cosine(base, embed_text("quarterly revenue grew 5%", 1536))
    assert near > 0.4
    assert near > far + 0.3
    assert cosine(base, embed_text("The Cat  sat on the mat", 1536)) > 0.99


def test_empty_text_has_a_fixed_unit_vector() -> None:
    vec = embed_text("", 64)
    assert vec == embed_text("   \n", 64)
    assert abs(sum(x * x for x in vec) - 1.0) < 1e-9


def test_long_text() -> None:
    text = " ".join(f"word{i % 97} and more text" for i in range(800))  # ~16 KB
    vec = embed_text(text, 3072)
    assert len(vec) == 3072
    assert abs(math.sqrt(math.fsum(x * x for x in vec)) - 1.0) < 1e-9


def test_bad_dimensions() -> None:
    with pytest.raises(InvalidRequest) as caught:
        embed_text("hi", 0)
    assert caught.value.param == "dimensions"
