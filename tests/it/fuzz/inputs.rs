//! The generators of the fuzz tests: odd JSON values, bodies mutated from a valid one, broken
//! and deceptive images, raw bodies that are not what they claim, odd headers and paths. Each
//! is a proptest strategy; `fuzz.rs` assembles them into whole requests per route.
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, Union};
use serde_json::Value;

/// What the generators need to know about the running service.
pub struct Ctx {
    /// A valid token of the tenant that owns `job`.
    pub token: String,
    /// A valid token of another tenant.
    pub other_token: String,
    /// A token that was revoked.
    pub revoked: String,
    /// A succeeded job of the first tenant (with image 0).
    pub job: String,
}

/// One generated request. Its `Debug` is what a failure prints to reproduce it.
#[derive(Clone)]
pub struct Probe {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    /// Send the body in chunks (`Transfer-Encoding: chunked`, no `Content-Length`).
    pub chunked: bool,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {}", self.method, shorten(self.path.as_bytes(), 300))?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", shorten(value, 300))?;
        }
        let chunked = if self.chunked { ", chunked" } else { "" };
        match &self.body {
            None => writeln!(f, "(no body)"),
            Some(body) => writeln!(f, "({} bytes{chunked}) {}", body.len(), shorten(body, 2000)),
        }
    }
}

/// Bytes as text (escaped where they are not printable), cut to `max` characters.
pub fn shorten(bytes: &[u8], max: usize) -> String {
    let text: String = String::from_utf8_lossy(bytes).escape_debug().collect();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… ({} characters in all)", &text[..cut], text.chars().count()),
        None => text,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One of `values`, as owned strings.
fn one_of(values: &[&str]) -> BoxedStrategy<String> {
    select(values.iter().map(|s| s.to_string()).collect::<Vec<_>>()).boxed()
}

fn weighted<T: std::fmt::Debug + 'static>(arms: Vec<(u32, BoxedStrategy<T>)>) -> BoxedStrategy<T> {
    Union::new_weighted(arms).boxed()
}

pub fn regex(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")).boxed()
}

// ---------------------------------------------------------------------------------------------
// JSON values
// ---------------------------------------------------------------------------------------------

/// Number literals at and past every boundary a field may have (i32, u32, i64, u64, f32, f64).
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "0.0",
    "1",
    "-1",
    "7",
    "8",
    "65",
    "1.5",
    "-0.5",
    "1e2",
    "1E2",
    "0.1",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "100000000000000000000000000000000000000000",
    "3.4028235e38",
    "3.5e38",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "1e400",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "123456789.123456789e-5",
];

/// What looks like a number or a value but is not JSON, or is JSON of the wrong kind.
const ODD_LITERALS: &[&str] = &[
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "+1",
    "01",
    "1.",
    ".5",
    "-",
    "0x10",
    "1e",
    "--1",
    "1_000",
    "undefined",
    "None",
    "True",
    "'single'",
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "[[]]",
    "[null]",
    "[1,2,3]",
    "[\"a\",\"b\"]",
    "{\"a\":1}",
    "{\"\":null}",
    "\"\"",
    "\" \"",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"1e400\"",
    "\"64\"",
    "\"-1\"",
    "\"true\"",
    "\"null\"",
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\u001b[31mred\"",
    "\"\\\\\"",
    "\"\\x41\"",
    "\"tiny\"",
    "\"Euler\"",
    "\"png\"",
];

/// Any JSON text (or almost-JSON) a field's value may be replaced with.
pub fn raw_value() -> BoxedStrategy<String> {
    let quoted = |s: String| serde_json::to_string(&s).unwrap_or_default();
    weighted(vec![
        (5, select(NUMBERS).prop_map(str::to_string).boxed()),
        (5, select(ODD_LITERALS).prop_map(str::to_string).boxed()),
        (2, any::<i64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<u64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")).boxed()),
        // Control characters (NUL, ESC, DEL, C1), bidi overrides, BOMs.
        (3, regex("[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202e}\\u{feff}a-z ]{0,24}").prop_map(quoted).boxed()),
        (1, any::<String>().prop_map(quoted).boxed()),
        // Longer than any text field allows (prompts: 4000 characters), in 1 to 4 UTF-8 bytes a character.
        (2, (3990usize..12_000, select(vec!["x", "é", "語", "🙂", "\u{0}"])).prop_map(move |(n, c)| quoted(c.repeat(n))).boxed()),
        // Nested deeper than parsers like.
        (1, (1usize..400).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))).boxed()),
        (1, (1usize..300).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))).boxed()),
        (2, image_value().prop_map(quoted).boxed()),
    ])
}

/// What a number may be replaced with: numbers at and past every boundary, and what looks
/// like a number but is not one.
pub fn number_like() -> BoxedStrategy<String> {
    weighted(vec![
        (6, select(NUMBERS).prop_map(str::to_string).boxed()),
        (
            3,
            one_of(&[
                "NaN",
                "-NaN",
                "Infinity",
                "-Infinity",
                "+1",
                "01",
                "1.",
                ".5",
                "0x10",
                "\"NaN\"",
                "\"Infinity\"",
                "\"-Infinity\"",
                "\"1e400\"",
                "\"18446744073709551616\"",
                "\"64\"",
                "null",
                "true",
                "[]",
                "{}",
                "[64]",
            ]),
        ),
        (1, any::<i64>().prop_map(|n| n.to_string()).boxed()),
        (1, any::<u64>().prop_map(|n| n.to_string()).boxed()),
    ])
}

/// What a text may be replaced with: control characters, NUL, very long texts, other types.
pub fn text_like() -> BoxedStrategy<String> {
    let quoted = |s: String| serde_json::to_string(&s).unwrap_or_default();
    weighted(vec![
        (3, regex("[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202e}\\u{feff}a-z ]{0,24}").prop_map(quoted).boxed()),
        (2, (3990usize..12_000, select(vec!["x", "é", "語", "🙂", "\u{0}"])).prop_map(move |(n, c)| quoted(c.repeat(n))).boxed()),
        (1, any::<String>().prop_map(quoted).boxed()),
        (2, one_of(&["\"\"", "\" \"", "\"\\u0000\"", "\"\\ud800\"", "1", "null", "true", "[]", "[\"a\"]", "{}", "\"None\"", "\"tiny\""])),
        (1, image_value().prop_map(quoted).boxed()),
    ])
}

/// Names for fields nobody asked for (or that look like known ones).
fn key_name() -> BoxedStrategy<String> {
    weighted(vec![
        (3, one_of(&["x", "", " ", "__proto__", "constructor", "Prompt", "prompt ", "model\u{0}", "a.b", "0", "[]", "$where", "%s%n", "\u{feff}prompt"])),
        (2, regex("[a-z_]{1,16}")),
        (1, any::<String>().boxed()),
        (1, (1000usize..5000).prop_map(|n| "k".repeat(n)).boxed()),
    ])
}

/// One change to a valid body; a number picks a node (modulo how many there are) among those
/// present when it applies.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Remove a field or array element.
    Drop(usize),
    /// Replace a node's value with JSON text.
    Replace(usize, String),
    /// Add a field to an object.
    Add(usize, String, String),
    /// Repeat a top-level field, with another value, in the same object.
    Duplicate(usize, String),
    /// Replace a number (any node when there is none).
    Number(usize, String),
    /// Replace a text (any node when there is none).
    Text(usize, String),
}

fn mutation() -> BoxedStrategy<Mutation> {
    weighted(vec![
        (2, any::<usize>().prop_map(Mutation::Drop).boxed()),
        (6, (any::<usize>(), raw_value()).prop_map(|(i, v)| Mutation::Replace(i, v)).boxed()),
        (2, (any::<usize>(), key_name(), raw_value()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)).boxed()),
        (1, (any::<usize>(), raw_value()).prop_map(|(i, v)| Mutation::Duplicate(i, v)).boxed()),
        (5, (any::<usize>(), number_like()).prop_map(|(i, v)| Mutation::Number(i, v)).boxed()),
        (4, (any::<usize>(), text_like()).prop_map(|(i, v)| Mutation::Text(i, v)).boxed()),
    ])
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

/// The path of every node below the root, parents before children.
fn paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        let children: Vec<(Seg, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, v)| (Seg::Key(k.clone()), v)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, v)| (Seg::At(i), v)).collect(),
            _ => Vec::new(),
        };
        for (seg, child) in children {
            here.push(seg);
            out.push(here.clone());
            walk(child, here, out);
            here.pop();
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |node, seg| match seg {
        Seg::Key(k) => node.get(k.as_str()),
        Seg::At(i) => node.get(*i),
    })
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, seg| match seg {
        Seg::Key(k) => node.get_mut(k.as_str()),
        Seg::At(i) => node.get_mut(*i),
    })
}

/// A valid body with `mutations` applied, as the bytes sent.
pub fn apply(valid: &Value, mutations: &[Mutation]) -> Vec<u8> {
    let mut v = valid.clone();
    let mut raws: Vec<String> = Vec::new();
    let mut duplicates: Vec<(String, String)> = Vec::new();
    // A placeholder string stands for a raw value until the body is serialized.
    let mut placeholder = |raw: &str| {
        raws.push(raw.to_string());
        Value::String(format!("@@RAW{}@@", raws.len() - 1))
    };
    for m in mutations {
        let all = paths(&v);
        match m {
            Mutation::Drop(i) if !all.is_empty() => {
                let path = &all[i % all.len()];
                let (last, parent) = path.split_last().expect("a path below the root");
                match (node_mut(&mut v, parent), last) {
                    (Some(Value::Object(m)), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Some(Value::Array(a)), Seg::At(i)) if *i < a.len() => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
            Mutation::Replace(i, raw) | Mutation::Number(i, raw) | Mutation::Text(i, raw) if !all.is_empty() => {
                let kind = |path: &Vec<Seg>| match (m, node(&v, path)) {
                    (Mutation::Number(..), Some(n)) => n.is_number(),
                    (Mutation::Text(..), Some(n)) => n.is_string(),
                    _ => true,
                };
                let mut candidates: Vec<&Vec<Seg>> = all.iter().filter(|p| kind(p)).collect();
                if candidates.is_empty() {
                    candidates = all.iter().collect();
                }
                let path = candidates[i % candidates.len()].clone();
                let value = placeholder(raw);
                if let Some(node) = node_mut(&mut v, &path) {
                    *node = value;
                }
            }
            Mutation::Add(i, key, raw) => {
                let mut objects: Vec<Vec<Seg>> = vec![Vec::new()];
                objects.extend(all.into_iter().filter(|p| matches!(node(&v, p), Some(Value::Object(_)))));
                let value = placeholder(raw);
                if let Some(Value::Object(m)) = node_mut(&mut v, &objects[i % objects.len()]) {
                    m.insert(key.clone(), value);
                }
            }
            Mutation::Duplicate(i, raw) => {
                if let Value::Object(m) = &v {
                    if !m.is_empty() {
                        let key = m.keys().nth(i % m.len()).cloned().unwrap_or_default();
                        duplicates.push((key, raw.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let mut text = serde_json::to_string(&v).unwrap_or_default();
    for (key, raw) in duplicates {
        if text.starts_with('{') {
            let sep = if text == "{}" { "" } else { "," };
            text.insert_str(1, &format!("{}:{raw}{sep}", serde_json::to_string(&key).unwrap_or_default()));
        }
    }
    for (i, raw) in raws.iter().enumerate() {
        text = text.replace(&format!("\"@@RAW{i}@@\""), raw);
    }
    text.into_bytes()
}

/// A valid body with one to three mutations.
pub fn mutated(valid: Value) -> BoxedStrategy<Vec<u8>> {
    let valid = Arc::new(valid);
    proptest::collection::vec(mutation(), 1..=3).prop_map(move |ms| apply(&valid, &ms)).boxed()
}

/// A valid body whose image field (a JSON pointer) holds a generated image, sometimes with one
/// more mutation.
pub fn with_image(valid: Value, pointer: &'static str) -> BoxedStrategy<Vec<u8>> {
    let valid = Arc::new(valid);
    (image_value(), proptest::collection::vec(mutation(), 0..=1))
        .prop_map(move |(image, ms)| {
            let mut v = (*valid).clone();
            if let Some(node) = v.pointer_mut(pointer) {
                *node = Value::String(image);
            }
            apply(&v, &ms)
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// Encoded images the image generators start from.
struct Images {
    png: Vec<u8>,
    jpeg: Vec<u8>,
    webp: Vec<u8>,
    /// Decodable but odd: tiny, thin, RGBA, 16-bit grey, greyscale JPEG.
    odd: Vec<Vec<u8>>,
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), format).expect("the test image encodes");
    buf
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
        let rgb = |w, h| DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 90])));
        Images {
            png: encode(rgb(64, 64), ImageFormat::Png),
            jpeg: encode(rgb(64, 64), ImageFormat::Jpeg),
            webp: encode(rgb(64, 64), ImageFormat::WebP),
            odd: vec![
                encode(rgb(1, 1), ImageFormat::Png),
                encode(rgb(4096, 1), ImageFormat::Png),
                encode(rgb(3, 200), ImageFormat::Jpeg),
                encode(DynamicImage::ImageRgba8(ImageBuffer::from_pixel(64, 64, Rgba([9, 9, 9, 0]))), ImageFormat::Png),
                encode(DynamicImage::ImageLuma16(ImageBuffer::from_pixel(40, 24, Luma([60000u16]))), ImageFormat::Png),
                encode(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(64, 64, Luma([7u8]))), ImageFormat::Jpeg),
            ],
        }
    })
}

/// The 64x64 PNG, base64: the valid init image of the valid bodies.
pub fn png_b64() -> String {
    b64(&images().png)
}

/// A real PNG whose header says `w`x`h` (with a correct CRC): its data no longer fits.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = images().png.clone();
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 bytes, CRC (4).
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A real JPEG whose baseline frame header says `w`x`h`.
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = images().jpeg.clone();
    if let Some(at) = bytes.windows(2).position(|m| m == [0xFF, 0xC0]) {
        bytes[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
        bytes[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
    }
    bytes
}

/// An init image value: mostly not what it should be.
pub fn image_value() -> BoxedStrategy<String> {
    let base = || {
        select(vec!["png", "jpeg", "webp"]).prop_map(|f| match f {
            "png" => images().png.clone(),
            "jpeg" => images().jpeg.clone(),
            _ => images().webp.clone(),
        })
    };
    weighted(vec![
        // Valid, and odd but decodable.
        (1, Just(png_b64()).boxed()),
        (2, any::<usize>().prop_map(|i| b64(&images().odd[i % images().odd.len()])).boxed()),
        // Truncated anywhere, or with one byte changed.
        (3, (base(), any::<usize>()).prop_map(|(bytes, i)| b64(&bytes[..i % bytes.len()])).boxed()),
        (
            2,
            (base(), any::<usize>(), 1u8..=255)
                .prop_map(|(mut bytes, i, x)| {
                    let at = i % bytes.len();
                    bytes[at] ^= x;
                    b64(&bytes)
                })
                .boxed(),
        ),
        // Declaring sizes that are huge, zero, just over the bound, or not the data's.
        (
            3,
            select(vec![(100_000, 100_000), (4096, 4096), (4097, 1), (1, 4097), (2000, 1), (0, 0), (0, 64), (u32::MAX, u32::MAX)])
                .prop_map(|(w, h)| b64(&png_declaring(w, h)))
                .boxed(),
        ),
        (1, select(vec![(65_500, 65_500), (0, 0), (4096, 4096), (1, 1)]).prop_map(|(w, h)| b64(&jpeg_declaring(w, h))).boxed()),
        // Not images at all.
        (1, proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| b64(&b)).boxed()),
        (
            1,
            select(vec![
                &b"hello world"[..],
                b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
                b"BM\x1e\x00\x00\x00\x00\x00\x00\x00\x1a\x00\x00\x00",
                b"%PDF-1.4\n",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"99999\" height=\"99999\"/>",
                b"RIFF\x10\x00\x00\x00WEBPVP8 ",
                b"\x89PNG\r\n\x1a\n",
                b"\xff\xd8\xff",
                b"",
            ])
            .prop_map(b64)
            .boxed(),
        ),
        // Not base64, or a data: URI that is not one.
        (
            2,
            one_of(&[
                "not base64!",
                "====",
                "a",
                "ab=c",
                "YQ",
                "YQ===",
                "Y Q = =",
                "\u{0}",
                "\n\n",
                "🙂🙂",
                "data:",
                "data:image/png;base64,",
                "data:image/png;base64,!!!",
                "data:text/plain;base64,aGVsbG8=",
                "data:image/png,notbase64",
                "data:;base64,aGk=",
                "https://example.com/cat.png",
            ]),
        ),
        (1, regex("[A-Za-z0-9+/=\\-_. \\n\\x00]{1,64}")),
        (1, Just(format!("data:image/jpeg;base64,{}", png_b64())).boxed()),
        (1, Just(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&images().jpeg)).boxed()),
    ])
}

/// The init image values every image field is tried with in the sweep.
pub fn edge_images() -> Vec<String> {
    let i = images();
    let half = |b: &[u8]| b64(&b[..b.len() / 2]);
    let mut out = vec![
        b64(&png_declaring(100_000, 100_000)),
        b64(&png_declaring(4097, 1)),
        b64(&png_declaring(0, 0)),
        b64(&png_declaring(2000, 1)),
        b64(&jpeg_declaring(65_500, 65_500)),
        half(&i.png),
        b64(&i.png[..33]),
        half(&i.jpeg),
        half(&i.webp),
        b64(b"hello world"),
        b64(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        "not base64!".into(),
        "YQ===".into(),
        "data:text/plain;base64,aGk=".into(),
        "data:image/png;base64,".into(),
        String::new(),
    ];
    out.extend(i.odd.iter().map(|b| b64(b)));
    out
}

/// Numbers every numeric field is tried with in the sweep.
const EDGE_NUMBERS: &[&str] = &[
    "-1",
    "-0",
    "1.5",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "\"NaN\"",
    "\"Infinity\"",
    "null",
    "\"64\"",
];

/// Every body of the sweep for a valid body: each number at each edge, each text with control
/// characters, NUL, a lone surrogate, over 4000 characters or of another type, each other value
/// of the wrong type, each field dropped, each image field with each of [`edge_images`], an
/// unknown and a repeated field.
pub fn edge_bodies(valid: &Value, image_fields: &[&str]) -> Vec<Vec<u8>> {
    let quoted = |s: String| serde_json::to_string(&s).unwrap_or_default();
    let texts: Vec<String> = ["\"\"", "\"a\\u0000b\"", "\"\\u001b[2J\\u007f\\u0085\\u202e\"", "\"\\ud800\"", "1", "null", "[]", "{}"]
        .iter()
        .map(|s| s.to_string())
        .chain([quoted("x".repeat(4001)), quoted("🙂".repeat(4001)), quoted("\u{0}".repeat(5000))])
        .collect();
    let mut out = Vec::new();
    for (i, path) in paths(valid).iter().enumerate() {
        let raws: Vec<String> = match node(valid, path) {
            Some(Value::Number(_)) => EDGE_NUMBERS.iter().map(|s| s.to_string()).collect(),
            Some(Value::String(_)) => texts.clone(),
            _ => vec!["\"x\"".into(), "1".into(), "[null]".into()],
        };
        out.extend(raws.into_iter().map(|raw| apply(valid, &[Mutation::Replace(i, raw)])));
        out.push(apply(valid, &[Mutation::Drop(i)]));
    }
    for pointer in image_fields {
        for image in edge_images() {
            let mut v = valid.clone();
            if let Some(node) = v.pointer_mut(pointer) {
                *node = Value::String(image);
            }
            out.push(serde_json::to_vec(&v).unwrap_or_default());
        }
    }
    out.push(apply(valid, &[Mutation::Add(0, "x".into(), "1".into())]));
    out.push(apply(valid, &[Mutation::Duplicate(0, "null".into())]));
    out
}

// ---------------------------------------------------------------------------------------------
// Whole bodies, headers, paths
// ---------------------------------------------------------------------------------------------

/// Bodies that are not a JSON object of the request: empty, not JSON, truncated, not UTF-8,
/// nested too deep, over the body limit.
pub fn raw_body(valid: Value, max_body: usize) -> BoxedStrategy<Vec<u8>> {
    let text = Arc::new(serde_json::to_vec(&valid).unwrap_or_default());
    let (t1, t2, t3) = (text.clone(), text.clone(), text.clone());
    weighted(vec![
        (
            3,
            one_of(&[
                "",
                " ",
                "\n",
                "null",
                "[]",
                "{}",
                "\"s\"",
                "0",
                "-0",
                "1e400",
                "NaN",
                "true",
                "{",
                "}",
                "{\"",
                "[{}]",
                "{}{}",
                "{} x",
                "hello",
                "prompt=p&model=tiny",
                "<?xml version=\"1.0\"?><a/>",
                "\u{feff}{}",
                "{\"prompt\":\"\\ud800\"}",
            ])
            .prop_map(String::into_bytes)
            .boxed(),
        ),
        (2, any::<usize>().prop_map(move |i| t1[..i % t1.len().max(1)].to_vec()).boxed()),
        (
            1,
            select(vec!["x", "}", ",", "\u{0}", " {}", "\n\n{"])
                .prop_map(move |tail| {
                    let mut b = t2.to_vec();
                    b.extend_from_slice(tail.as_bytes());
                    b
                })
                .boxed(),
        ),
        (2, proptest::collection::vec(any::<u8>(), 0..256).boxed()),
        (1, Just(b"{\"prompt\":\"\xff\xfe\xc0\x80\"}".to_vec()).boxed()),
        (1, Just(serde_json::to_string(&valid).unwrap_or_default().encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>()).boxed()),
        (1, (100usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()).boxed()),
        (1, (100usize..3000).prop_map(|n| format!("{{\"k\":{}", "{\"k\":".repeat(n)).into_bytes()).boxed()),
        (1, (100usize..5000).prop_map(|n| format!("{{{}}}", (0..n).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",")).into_bytes()).boxed()),
        // Over the limit: padded with spaces (valid JSON once read whole) or a long string.
        (
            2,
            (1usize..64 * 1024)
                .prop_map(move |extra| {
                    let mut b = t3.to_vec();
                    b.resize(max_body + extra, b' ');
                    b
                })
                .boxed(),
        ),
        (1, (1usize..64 * 1024).prop_map(move |extra| format!("{{\"prompt\":\"{}\"}}", "x".repeat(max_body + extra)).into_bytes()).boxed()),
    ])
}

/// A body for a route that reads JSON: mostly mutated from `valid`, with images in
/// `image_fields` (JSON pointers), or raw.
pub fn json_body(valid: Value, image_fields: &[&'static str], max_body: usize) -> BoxedStrategy<Option<Vec<u8>>> {
    let mut arms = vec![(6, mutated(valid.clone())), (2, raw_body(valid.clone(), max_body))];
    for pointer in image_fields {
        arms.push((4 / image_fields.len() as u32, with_image(valid.clone(), pointer)));
    }
    arms.push((1, Just(serde_json::to_vec(&valid).unwrap_or_default()).boxed()));
    weighted(arms).prop_map(Some).boxed()
}

/// A body for a route that reads none: usually none, sometimes junk.
pub fn stray_body() -> BoxedStrategy<Option<Vec<u8>>> {
    weighted(vec![(4, Just(None).boxed()), (1, raw_body(serde_json::json!({"x": 1}), 1024).prop_map(Some).boxed())])
}

/// Authorization headers nobody should accept (`None`: no header), and some that are merely odd.
pub fn odd_auth_values(ctx: &Ctx) -> Vec<Option<Vec<u8>>> {
    let basic = |s: &[u8]| format!("Basic {}", b64(s)).into_bytes();
    vec![
        None,
        Some(b"".to_vec()),
        Some(b"Bearer".to_vec()),
        Some(b"Bearer ".to_vec()),
        Some(b"Bearer  \t ".to_vec()),
        Some(b"Basic".to_vec()),
        Some(b"Basic !!!".to_vec()),
        Some(b"Basic ====".to_vec()),
        Some(basic(b"no-colon")),
        Some(basic(b":")),
        Some(basic(b"user:")),
        Some(basic(b"\xff\xfe:\xff")),
        Some(basic(format!("user:{}", ctx.revoked).as_bytes())),
        Some(format!("Basic {}!!", b64(format!("user:{}", ctx.token).as_bytes())).into_bytes()),
        Some(format!("Bearer {}", ctx.revoked).into_bytes()),
        Some(format!("Bearer {} extra", ctx.token).into_bytes()),
        Some(format!("Bearer {}\u{a0}", ctx.token).into_bytes()),
        Some(format!("Token {}", ctx.token).into_bytes()),
        Some(format!("Digest username=\"u\", response=\"{}\"", ctx.token).into_bytes()),
        Some(b"Negotiate YIIB".to_vec()),
        Some(b"NTLM TlRMTVNTUAABAAAA".to_vec()),
        Some(b"AWS4-HMAC-SHA256 Credential=x".to_vec()),
        Some(b"Bearer drk_\x80\xff\xfe".to_vec()),
        Some(b"\xc3\xa9\xc3\xa9 x".to_vec()),
        Some(b"Bearer drk_'; DROP TABLE tenants; --".to_vec()),
        Some(format!("Bearer {}", "a".repeat(16_000)).into_bytes()),
    ]
}

/// Authorization headers nobody should accept, and some that are merely odd.
pub fn odd_auth(ctx: &Ctx) -> BoxedStrategy<Option<Vec<u8>>> {
    let basic = |s: &[u8]| format!("Basic {}", b64(s)).into_bytes();
    let fixed = odd_auth_values(ctx);
    weighted(vec![
        (6, select(fixed).boxed()),
        (1, (1usize..16_000).prop_map(|n| Some(format!("Bearer {}", "a".repeat(n)).into_bytes())).boxed()),
        (1, (1usize..12_000).prop_map(move |n| Some(basic(format!("u:{}", "p".repeat(n)).as_bytes()))).boxed()),
        (1, regex("[ -~]{0,80}").prop_map(|s| Some(format!("Bearer {s}").into_bytes())).boxed()),
        (1, proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..64).prop_map(Some).boxed()),
    ])
}

/// Mostly valid credentials (of the job's tenant or another), sometimes odd ones.
pub fn auth(ctx: &Ctx) -> BoxedStrategy<Option<Vec<u8>>> {
    let bearer = format!("Bearer {}", ctx.token).into_bytes();
    let basic = format!("Basic {}", b64(format!("admin:{}", ctx.token).as_bytes())).into_bytes();
    let other = format!("Bearer {}", ctx.other_token).into_bytes();
    weighted(vec![(12, Just(Some(bearer)).boxed()), (3, Just(Some(basic)).boxed()), (1, Just(Some(other)).boxed()), (3, odd_auth(ctx))])
}

/// Content-Type: mostly JSON's, else missing, wrong or broken.
pub fn content_type() -> BoxedStrategy<Option<Vec<u8>>> {
    let odd: Vec<Option<Vec<u8>>> = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/problem+json",
        "APPLICATION/JSON",
        "application/jsonx",
        "application/",
        "",
        ";;;",
        "*/*",
        "image/png",
        "application/json, text/plain",
    ]
    .iter()
    .map(|s| Some(s.as_bytes().to_vec()))
    .chain([Some(b"application/json; \xff".to_vec())])
    .collect();
    weighted(vec![(12, Just(Some(b"application/json".to_vec())).boxed()), (2, Just(None).boxed()), (3, select(odd).boxed())])
}

/// Headers some routes read (`Prefer`, `Idempotency-Key`, `Accept`, the HF flags), with odd values.
pub fn extra_headers() -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let value = || {
        weighted(vec![
            (
                4,
                one_of(&[
                    "wait=0",
                    "wait=-1",
                    "wait=1",
                    "wait=18446744073709551616",
                    "wait=1e400",
                    "wait=NaN",
                    "wait=\"\"",
                    "respond-async",
                    "",
                    " ",
                    "true",
                    "TRUE",
                    "maybe",
                    "2",
                    "0",
                    "*/*",
                    "image/tiff",
                    "image/png",
                    "application/json",
                    "text/html;q=0.1, image/*",
                    "k1",
                    "k2",
                ])
                .prop_map(String::into_bytes)
                .boxed(),
            ),
            (1, (256usize..4000).prop_map(|n| vec![b'k'; n]).boxed()),
            (1, proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..40).boxed()),
        ])
    };
    let header = (one_of(&["prefer", "idempotency-key", "accept", "x-use-cache", "x-wait-for-model", "content-encoding", "x-forwarded-for"]), value());
    weighted(vec![(3, Just(Vec::new()).boxed()), (1, proptest::collection::vec(header, 1..=3).boxed())])
}

/// A path segment standing for a job id: the real job, another id, or not an id.
pub fn job_segment(ctx: &Ctx) -> BoxedStrategy<String> {
    weighted(vec![
        (3, Just(ctx.job.clone()).boxed()),
        (1, any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()).boxed()),
        (
            2,
            one_of(&[
                "not-a-uuid",
                "0",
                "-1",
                "00000000-0000-0000-0000-000000000000",
                "%00",
                "%FF",
                "%2e%2e",
                "..",
                "%zz",
                "%",
                "%E2%80%AE",
                "🙂",
                ";x",
                "0190e0a4-0000-7000-8000-000000000000%00",
                "{id}",
            ]),
        ),
        (1, (100usize..3000).prop_map(|n| "a".repeat(n)).boxed()),
    ])
}

/// A path segment standing for an image index.
pub fn index_segment() -> BoxedStrategy<String> {
    weighted(vec![
        (2, one_of(&["0", "1", "7"])),
        (
            3,
            one_of(&[
                "-1",
                "2147483647",
                "2147483648",
                "-2147483649",
                "9223372036854775808",
                "18446744073709551616",
                "1e3",
                "0x1",
                "00",
                "+1",
                "%201",
                "%00",
                "%FF",
                "NaN",
                "1.0",
            ]),
        ),
    ])
}

/// A query string for `GET /v1/jobs`.
pub fn list_query(ctx: &Ctx) -> BoxedStrategy<String> {
    let job = ctx.job.clone();
    let value = weighted(vec![
        (
            4,
            one_of(&[
                "1",
                "0",
                "20",
                "100",
                "101",
                "-1",
                "1e400",
                "18446744073709551616",
                "9223372036854775808",
                "",
                "not-a-uuid",
                "%zz",
                "%FF",
                "%00",
                "a%26b",
                "%2B1",
                "1.5",
                "[]",
            ]),
        ),
        (1, Just(job).boxed()),
        (1, regex("[ -~]{0,20}").prop_map(|s| s.replace(['#', '&', ' '], "")).boxed()),
    ]);
    let pair = (one_of(&["limit", "before", "limit", "before", "x", "", "limit[]"]), value);
    proptest::collection::vec(pair, 0..=3)
        .prop_map(|pairs| {
            let q: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            }
        })
        .boxed()
}

/// A model id in the HF serverless path.
pub fn model_segment() -> BoxedStrategy<String> {
    weighted(vec![
        (4, Just("tiny".to_string()).boxed()),
        (1, Just("org/some-model".to_string()).boxed()),
        (2, one_of(&["%FF", "%00", "..%2F..", "tiny/", "tiny%2F", "%C3%A9", "TINY", "tiny%20", "a/b/c/d", "%zz", "🙂"])),
        (1, (200usize..3000).prop_map(|n| "m".repeat(n)).boxed()),
    ])
}

/// Put a request together; `Authorization` and `Content-Type` are left out when `None`.
pub fn probe(
    method: BoxedStrategy<String>,
    path: BoxedStrategy<String>,
    body: BoxedStrategy<Option<Vec<u8>>>,
    auth: BoxedStrategy<Option<Vec<u8>>>,
) -> BoxedStrategy<Probe> {
    let chunked = prop_oneof![9 => Just(false), 1 => Just(true)];
    (method, path, body, auth, content_type(), extra_headers(), chunked)
        .prop_map(|(method, path, body, auth, content_type, extra, chunked)| {
            let mut headers = Vec::new();
            if let Some(a) = auth {
                headers.push(("authorization".to_string(), a));
            }
            if body.is_some() {
                if let Some(ct) = content_type {
                    headers.push(("content-type".to_string(), ct));
                }
            }
            headers.extend(extra);
            Probe { method, path, headers, body, chunked }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mutations_apply_raw_text() {
        let valid = json!({"a": 1, "b": {"c": [2]}});
        // Numbers pick among the nodes: a, b, b.c, b.c[0].
        let at = |i: usize| i + 4;
        assert_eq!(apply(&valid, &[Mutation::Replace(at(0), "1e400".into())]), br#"{"a":1e400,"b":{"c":[2]}}"#);
        assert_eq!(apply(&valid, &[Mutation::Drop(at(3))]), br#"{"a":1,"b":{"c":[]}}"#);
        assert_eq!(apply(&valid, &[Mutation::Duplicate(at(0), "NaN".into())]), br#"{"a":NaN,"a":1,"b":{"c":[2]}}"#);
    }
}
