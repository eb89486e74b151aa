"""The AUTOMATIC1111 dialect through real clients: `webuiapi` (PyPI) and seed 004's `requests`
samples, against the service tools/client-tests.sh starts (fixtures `url`, `token`, `model` from
conftest.py)."""
import base64
import io
import json
from urllib.parse import urlparse

import pytest
import requests
import webuiapi
from PIL import Image

@pytest.fixture(scope="module")
def api(url, token):
    u = urlparse(url)
    client = webuiapi.WebUIApi(host=u.hostname, port=u.port or 80, use_https=False)
    client.set_auth("user", token)
    return client


def basic_headers(token):
    credentials = base64.b64encode(f"admin:{token}".encode()).decode()
    return {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"}


def test_webuiapi_txt2img(api):
    result = api.txt2img(prompt="a cute squirrel", negative_prompt="ugly", seed=1003, steps=4,
                         cfg_scale=7, width=64, height=64, batch_size=2, sampler_name="DPM++ 2M Karras")
    assert len(result.images) == 2
    assert result.images[0].size == (64, 64)
    assert result.info["all_seeds"] == [1003, 1004]
    assert result.info["sd_model_name"]
    assert result.parameters["prompt"] == "a cute squirrel"


def test_webuiapi_img2img(api):
    init = Image.new("RGB", (64, 64), (200, 40, 90))
    result = api.img2img(images=[init], prompt="a painting", seed=5, steps=4, width=64, height=64,
                         denoising_strength=0.6)
    assert len(result.images) == 1
    assert result.info["denoising_strength"] == pytest.approx(0.6)


def test_webuiapi_models_and_options(api, model):
    # Titles are A1111's `name [hash]`, hash the first 10 digits of the UNet's sha256.
    titles = api.util_get_model_names()
    entry = next(m for m in api.get_sd_models() if m["model_name"] == model)
    title = f"{model} [{entry['hash']}]"
    assert title in titles
    assert entry["sha256"].startswith(entry["hash"]) and len(entry["sha256"]) == 64
    # webuiapi's closest match picks the title for the bare name; the options report it.
    api.util_set_model(model)
    assert api.util_get_current_model() == title
    api.util_set_model(title)
    assert api.util_get_current_model() == title
    api.set_options({"sd_model_checkpoint": model, "jpeg_quality": 90})
    options = api.get_options()
    assert options["sd_model_checkpoint"] == title
    assert options["sd_checkpoint_hash"] == entry["sha256"]
    assert options["jpeg_quality"] == 90
    assert "Euler" in api.util_get_sampler_names()
    assert api.util_get_scheduler_names() == ["automatic", "karras"]
    progress = api.get_progress()
    assert progress["state"]["job_count"] == 0


def test_seed_004_txt2img_sample(url, token):
    """Seed 004's sample code, as written but for the URL and the credentials."""
    payload = {
        "prompt": "apple",
        "negative_prompt": "red",
        "sampler_name": "DPM++ 2M Karras",
        "seed": 985454925,
        "cfg_scale": 7,
        "steps": 20,
        "width": 512,
        "height": 512,
    }
    response = requests.post(url=f"{url}/sdapi/v1/txt2img", json=payload, headers=basic_headers(token))
    r = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(r["images"][0])))
    assert image.size == (512, 512)
    assert json.loads(r["info"])["seed"] == 985454925


def test_seed_004_models_and_options_samples(url, token, model):
    response = requests.get(url=f"{url}/sdapi/v1/sd-models", headers=basic_headers(token))
    models = response.json()
    print(json.dumps(models))
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    payload = {"sd_model_checkpoint": model}
    response = requests.post(url=f"{url}/sdapi/v1/options", json=payload, headers=basic_headers(token))
    assert response.status_code == 200
    assert response.json() is None


def test_wrong_password_is_a1111s_401(url):
    r = requests.get(f"{url}/sdapi/v1/options", auth=("admin", "drk_wrong"))
    assert r.status_code == 401
    assert r.json() == {"detail": "Incorrect username or password"}
