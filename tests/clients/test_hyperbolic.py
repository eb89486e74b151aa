"""The Hyperbolic dialect through `requests`, as its docs call it (model names are aliases:
tools/client-tests.sh maps SDXL1.0-base and SD1.5 to the served model)."""
import base64
import io

import requests
from PIL import Image


def test_docs_example(url, token):
    response = requests.post(
        f"{url}/v1/image/generation",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        json={
            "model_name": "SDXL1.0-base",
            "prompt": "a photo of an astronaut riding a horse on mars",
            "height": 128,
            "width": 128,
            "backend": "auto",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["inference_time"], float)
    (generated,) = body["images"]
    assert generated["index"] == 0 and isinstance(generated["random_seed"], int)
    image = Image.open(io.BytesIO(base64.b64decode(generated["image"])))
    assert image.size == (128, 128)


def test_unsupported_field_is_refused_by_name(url, token):
    response = requests.post(
        f"{url}/v1/image/generation",
        headers={"Authorization": f"Bearer {token}"},
        json={"model_name": "SD1.5", "prompt": "p", "loras": {"Pixel_Art": 0.7}},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["object"] == "error" and body["type"] == "invalid_request_error" and body["param"] == "loras"
