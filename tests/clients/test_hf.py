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
