"""The Hugging Face dialects through real clients: huggingface_hub's InferenceClient and the
`requests` examples of the users' docs (serverless text-to-image, and the endpoint handler)."""
import base64
import io

import requests
from huggingface_hub import InferenceClient
from PIL import Image


def test_inference_client_text_to_image(url, token, model):
    # A URL as the model: InferenceClient posts {"inputs", "parameters"} to it as it is.
    client = InferenceClient(model=f"{url}/models/{model}", token=token)
    image = client.text_to_image(
        "Astronaut riding a horse",
        negative_prompt="blurry",
        height=64,
        width=128,
        num_inference_steps=3,
        guidance_scale=7.5,
        seed=42,
    )
    assert image.size == (128, 64)
    again = client.text_to_image(
        "Astronaut riding a horse", negative_prompt="blurry", height=64, width=128, num_inference_steps=3, guidance_scale=7.5, seed=42
    )
    assert again.tobytes() == image.tobytes()


def test_serverless_requests_example(url, token, model):
    # The docs' example, adapted only in URL, token and model.
    API_URL = f"{url}/models/{model}"
    headers = {"Authorization": f"Bearer {token}"}

    def query(payload):
        response = requests.post(API_URL, headers=headers, json=payload)
        assert response.status_code == 200, response.text
        return response.content

    image_bytes = query({"inputs": "Astronaut riding a horse"})
    image = Image.open(io.BytesIO(image_bytes))
    assert image.format == "JPEG"


def test_serverless_no_cache_and_unknown_model(url, token, model):
    headers = {"Authorization": f"Bearer {token}", "x-use-cache": "false", "Accept": "image/png"}
    body = {"inputs": "a lighthouse", "parameters": {"num_inference_steps": 2}}
    a = requests.post(f"{url}/models/{model}", headers=headers, json=body)
    b = requests.post(f"{url}/models/{model}", headers=headers, json=body)
    assert a.headers["content-type"] == "image/png"
    assert a.content != b.content
    r = requests.post(f"{url}/models/no/such-model", headers=headers, json=body)
    assert r.status_code == 404
    assert r.json() == {"error": "Model no/such-model does not exist"}


def test_endpoint_handler_example(url, token):
    # The endpoint handler's example (seed 001), adapted in URL, token and size.
    requestData = {
        "inputs": "Positve prompt",
        "negative_prompt": "Negative prompt goes here",
        "height": 64,
        "width": 64,
        "guidance_scale": 7.5,
        "inference_steps": 50,
    }
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    response = requests.post(url + "/", json=requestData, headers=headers)
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["image"])))
    assert image.size == (64, 64)


def test_status_route(url, token, model):
    # huggingface_hub 2.4.0 has no client for the status route: `InferenceClient.get_model_status`
    # was removed in 0.35 (deprecated when HF's serverless API went "warm-only"), and it only ever
    # called the HF endpoint (HF_INFERENCE_ENDPOINT), never a model URL. So this is what it did,
    # with requests: GET {endpoint}/status/{model} with the token, then read `loaded`, `state`,
    # `compute_type` and `framework` (an `error` key raised instead).
    headers = {"Authorization": f"Bearer {token}"}
    r = requests.get(f"{url}/status/{model}", headers=headers)
    assert r.status_code == 200, r.text
    status = r.json()
    assert "error" not in status
    # tools/client-tests.sh runs one CPU worker serving the model.
    assert status == {"loaded": True, "state": "Loaded", "compute_type": "cpu", "framework": "diffusers"}
    # An alias (DARKROOM_MODEL_ALIASES in tools/client-tests.sh) answers for its model.
    assert requests.get(f"{url}/status/SD1.5", headers=headers).json() == status

    r = requests.get(f"{url}/status/no/such-model", headers=headers)
    assert r.status_code == 404
    assert r.json() == {"error": "Model no/such-model does not exist"}
    r = requests.get(f"{url}/status/{model}")
    assert r.status_code == 401
    assert isinstance(r.json()["error"], str)
