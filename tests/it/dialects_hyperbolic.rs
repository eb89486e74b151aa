//! The Hyperbolic dialect end to end (`POST /v1/image/generation`, seed 003), with the real API
//! and a real worker on the tiny model, reached through Hyperbolic's model names as aliases.
use std::io::Cursor;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::dialects_hf::Caller;
use crate::helpers::{ApiServer, ServiceEnv};
use crate::workers::Worker;

const ROUTE: &str = "/v1/image/generation";

fn png_b64(w: u32, h: u32) -> String {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut buf = Vec::new();
    img.write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png).expect("png");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// A 400 in Hyperbolic's error shape naming `param`.
fn assert_refused(status: u16, body: &Value, param: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!((body["object"].as_str(), body["type"].as_str()), (Some("error"), Some("invalid_request_error")), "{body}");
    assert_eq!(body["param"].as_str(), Some(param), "{body}");
    assert!(body["message"].as_str().unwrap().contains(param), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hyperbolic_seed_example_fields_and_errors() {
    let env = ServiceEnv::new();
    let api = ApiServer::start(&env, &[("DARKROOM_MODEL_ALIASES", "SDXL1.0-base=tiny,SD1.5=tiny")]);
    let acme = Caller::new(&api, &env.tenant_with_token("acme"));
    let globex = Caller::new(&api, &env.tenant_with_token("globex"));
    let _worker = Worker::start(&env, &[]);

    // The seed's curl example (the model name is an alias of the tiny model), at 128x128 instead
    // of 1024x1024: 1024 takes minutes on one CPU thread.
    let (status, body) = acme
        .json(
            ROUTE,
            json!({"model_name": "SDXL1.0-base", "prompt": "a photo of an astronaut riding a horse on mars", "height": 128, "width": 128, "backend": "auto"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let images = body["images"].as_array().expect("images");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["index"], 0);
    assert!(images[0]["random_seed"].as_i64().is_some(), "{body}");
    assert!(body["inference_time"].as_f64().unwrap() > 0.0, "{body}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(images[0]["image"].as_str().unwrap()).unwrap();
    let img = image::load_from_memory(&bytes).expect("an image");
    assert_eq!((img.width(), img.height()), (128, 128));
    // A normal job of its tenant, with Hyperbolic's defaults.
    let job = acme.newest_job().await;
    assert_eq!((job["model"].as_str(), job["request"]["steps"].as_u64()), (Some("tiny"), Some(30)));
    assert_eq!(job["request"]["guidance_scale"], 5.0);
    assert_eq!(job["request"]["seed"], images[0]["random_seed"]);
    let id = job["id"].as_str().unwrap();
    assert_eq!(acme.get(&format!("/v1/jobs/{id}")).await.0, 200);
    assert_eq!(globex.get(&format!("/v1/jobs/{id}")).await.0, 404);

    // The advanced options we support; the catalog id works as a model name too.
    let full = json!({"model_name": "tiny", "prompt": "a lighthouse", "negative_prompt": "fog", "prompt_2": "a lighthouse", "negative_prompt_2": "fog",
        "seed": 42, "cfg_scale": 7.0, "sampler": "DPM++ 2M Karras", "steps": 4, "backend": "torch", "enable_refiner": false,
        "style_preset": "", "loras": {}, "controlnet_name": null});
    let (status, a) = acme.json(ROUTE, full.clone()).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["images"][0]["random_seed"], 42);
    let (_, b) = acme.json(ROUTE, full).await;
    assert_eq!(a["images"][0]["image"], b["images"][0]["image"], "the same seed gives the same image");
    let req = &acme.newest_job().await["request"];
    assert_eq!((req["width"].as_u64(), req["sampler"].as_str(), req["negative_prompt"].as_str()), (Some(64), Some("DPM++ 2M Karras"), Some("fog")));

    // img2img: image + strength.
    let (status, body) =
        acme.json(ROUTE, json!({"model_name": "SD1.5", "prompt": "an oil painting", "image": png_b64(64, 64), "strength": 0.5, "steps": 4})).await;
    assert_eq!(status, 200, "{body}");
    let req = &acme.newest_job().await["request"];
    assert_eq!(req["strength"], 0.5);

    // Fields we do not support are refused by name, never ignored.
    let base = json!({"model_name": "SD1.5", "prompt": "p", "steps": 2});
    for (field, value) in [
        ("controlnet_name", json!("depth")),
        ("controlnet_image", json!(png_b64(8, 8))),
        ("loras", json!({"Pixel_Art": 0.7})),
        ("style_preset", json!("anime")),
        ("enable_refiner", json!(true)),
        ("prompt_2", json!("something else")),
        ("negative_prompt_2", json!("other")),
        ("backend", json!("cuda")),
        ("n", json!(2)),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (status, answer) = acme.json(ROUTE, body).await;
        assert_refused(status, &answer, field);
    }
    // Validation errors use Hyperbolic's names.
    for (field, value, param) in
        [("cfg_scale", json!(99), "cfg_scale"), ("steps", json!(0), "steps"), ("width", json!(100), "width"), ("sampler", json!("nope"), "sampler")]
    {
        let mut body = base.clone();
        body[field] = value;
        let (status, answer) = acme.json(ROUTE, body).await;
        assert_refused(status, &answer, param);
    }
    let (status, answer) = acme.json(ROUTE, json!({"model_name": "FLUX.1-dev", "prompt": "p"})).await;
    assert_eq!((status, answer["param"].as_str()), (400, Some("model_name")), "{answer}");
    let (status, answer) = acme.json(ROUTE, json!({"model_name": "SD1.5", "prompt": "p", "strength": 0.5})).await;
    assert_refused(status, &answer, "strength");
    let (status, answer) = acme.json(ROUTE, json!({"model_name": "SD1.5", "prompt": "p", "image": "not an image!"})).await;
    assert_refused(status, &answer, "image");
    let (status, answer) = acme.json(ROUTE, json!({"prompt": "p"})).await;
    assert_refused(status, &answer, "model_name");
    let (status, answer) = Caller::new(&api, "drk_nope").json(ROUTE, json!({"model_name": "SD1.5", "prompt": "p"})).await;
    assert_eq!((status, answer["type"].as_str()), (401, Some("authentication_error")), "{answer}");
}
