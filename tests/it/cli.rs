//! The `darkroom-worker generate` command as a user runs it.
use std::process::Command;

use crate::helpers::{model_dir, scratch, worker_bin};

fn generate(args: &[&str]) -> std::process::Output {
    Command::new(worker_bin())
        .arg("generate")
        .args(["--ep", "cpu", "--model-dir"])
        .arg(model_dir("tiny-sd15"))
        .args(args)
        .output()
        .expect("darkroom-worker runs")
}

#[test]
fn generates_indexed_files_and_prints_seeds_and_stage_times() {
    let dir = scratch("cli-generate");
    let out = dir.join("cat.png");
    let o =
        generate(&["--prompt", "a cat", "--width", "64", "--height", "64", "--steps", "3", "--seed", "7", "--num-images", "2", "-o", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("seed 7") && stdout.contains("seed 8"), "{stdout}");
    // stderr is a pipe here, not a terminal: plain progress lines per image, no bar.
    let stderr = String::from_utf8_lossy(&o.stderr);
    for line in ["image 1/2: step 1/3", "image 1/2: step 3/3", "image 2/2: step 1/3", "image 2/2: step 3/3"] {
        assert!(stderr.contains(line), "progress line {line:?}: {stderr}");
    }
    assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}'), "no terminal control characters: {stderr:?}");
    for stage in ["tokenize", "text encode", "unet", "vae decode", "total"] {
        assert!(stdout.contains(stage), "stage {stage} timed: {stdout}");
    }
    for i in 0..2 {
        let bytes = std::fs::read(dir.join(format!("cat-{i}.png"))).expect("indexed output");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let text = reader.info().utf8_text.iter().find(|t| t.keyword == "parameters").expect("parameters chunk").get_text().unwrap();
        assert!(text.starts_with("a cat\nSteps: 3, Sampler: Euler, CFG scale: 7.5"), "{text}");
        assert!(text.contains(&format!("Seed: {}", 7 + i)) && text.contains("Size: 64x64") && text.contains("Model: tiny-sd15"), "{text}");
    }
}

#[test]
fn jpeg_and_webp_follow_the_extension_and_img2img_works() {
    let dir = scratch("cli-formats");
    let jpg = dir.join("a.jpg");
    let o =
        generate(&["--prompt", "a dog", "--width", "64", "--height", "64", "--steps", "2", "--seed", "1", "--progress", "none", "-o", jpg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("step"), "--progress none: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::ImageFormat::from_path(&jpg).unwrap(), image::ImageFormat::Jpeg);
    assert!(image::load_from_memory_with_format(&std::fs::read(&jpg).unwrap(), image::ImageFormat::Jpeg).is_ok());
    let webp = dir.join("b.webp");
    let o = generate(&[
        "--prompt",
        "a dog",
        "--width",
        "96",
        "--height",
        "64",
        "--steps",
        "4",
        "--init-image",
        jpg.to_str().unwrap(),
        "--strength",
        "0.5",
        "-o",
        webp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::load_from_memory_with_format(&std::fs::read(&webp).unwrap(), image::ImageFormat::WebP).unwrap();
    assert_eq!((img.width(), img.height()), (96, 64));
}

#[test]
fn bad_arguments_get_a_clear_message_and_nonzero_exit() {
    let dir = scratch("cli-bad");
    let out = dir.join("x.png");
    let out = out.to_str().unwrap();
    let gif = dir.join("x.gif");
    let gif = gif.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--prompt", "x", "--width", "65", "-o", out], "--width"),
        (&["--prompt", "x", "--steps", "0", "-o", out], "--steps"),
        (&["--prompt", "x", "--sampler", "Warp Drive", "-o", out], "DPM++ 2M"),
        (&["--prompt", "x", "--guidance", "99", "-o", out], "--guidance"),
        (&["--prompt", "x", "-o", gif], ".png"),
        (&["--prompt", "x", "--strength", "0.5", "-o", out], "--init-image"),
        (&["--prompt", "a (cat:1.2.3)", "--prompt-syntax", "a1111", "-o", out], "--prompt: the attention weight \"1.2.3\""),
        (&["--prompt", "x", "--prompt-syntax", "comfy", "-o", out], "--prompt-syntax"),
    ];
    for (args, needle) in cases {
        let o = generate(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: message names {needle}: {stderr}");
    }
    let o = Command::new(worker_bin()).args(["generate", "--model-dir", "m", "--prompt", "x", "--ep", "tpu", "-o", out]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cpu, cuda"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(worker_bin()).args(["generate", "--model-dir", "/nonexistent", "--prompt", "x", "--ep", "cpu", "-o", out]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent"));
}
