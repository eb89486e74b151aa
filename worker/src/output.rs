//! Encoding generated images: PNG (with an AUTOMATIC1111-style `parameters` text chunk),
//! JPEG or WebP.
use std::io::Cursor;

use darkroom_shared::request::OutputFormat;
use image::ImageEncoder;

use crate::pipeline::RgbImage;

#[derive(Debug, thiserror::Error)]
#[error("could not encode the image as {format:?}: {message}")]
pub struct EncodeError {
    format: OutputFormat,
    message: String,
}

/// JPEG quality used for every JPEG we produce.
pub const JPEG_QUALITY: u8 = 92;

/// Encode `image`; `parameters` goes into the PNG's `parameters` text chunk (PNG only).
pub fn encode(image: &RgbImage, format: OutputFormat, parameters: &str) -> Result<Vec<u8>, EncodeError> {
    let err = |e: &dyn std::fmt::Display| EncodeError { format, message: e.to_string() };
    let (w, h) = (image.width as u32, image.height as u32);
    let mut out = Vec::new();
    match format {
        OutputFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.add_itxt_chunk("parameters".to_string(), parameters.to_string()).map_err(|e| err(&e))?;
            let mut writer = encoder.write_header().map_err(|e| err(&e))?;
            writer.write_image_data(&image.pixels).map_err(|e| err(&e))?;
            writer.finish().map_err(|e| err(&e))?;
        }
        OutputFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut out), JPEG_QUALITY)
                .write_image(&image.pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| err(&e))?;
        }
        OutputFormat::Webp => {
            image::codecs::webp::WebPEncoder::new_lossless(Cursor::new(&mut out))
                .write_image(&image.pixels, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| err(&e))?;
        }
    }
    Ok(out)
}

/// Decode a PNG, JPEG or WebP into RGB, refusing images over `max_pixels` before decoding them.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a PNG, JPEG or WebP image".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w as u64 * h as u64 > max_pixels {
        return Err(format!("the image is {w}x{h}, over the limit of {max_pixels} pixels"));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?.to_rgb8();
    Ok(RgbImage { width: img.width() as usize, height: img.height() as usize, pixels: img.into_raw() })
}

/// Resize to `width`×`height` with a Lanczos filter (diffusers resizes init images with PIL's Lanczos).
pub fn resize(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    if image.width == width && image.height == height {
        return image.clone();
    }
    let Some(buf) = image::RgbImage::from_raw(image.width as u32, image.height as u32, image.pixels.clone()) else {
        return image.clone();
    };
    let resized = image::imageops::resize(&buf, width as u32, height as u32, image::imageops::FilterType::Lanczos3);
    RgbImage { width, height, pixels: resized.into_raw() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        let (w, h) = (16, 8);
        let pixels = (0..w * h).flat_map(|i| [(i * 2) as u8, (i % w * 10) as u8, 200]).collect();
        RgbImage { width: w, height: h, pixels }
    }

    #[test]
    fn png_round_trips_and_carries_parameters() {
        let img = gradient();
        let bytes = encode(&img, OutputFormat::Png, "a cat\nSteps: 20").unwrap();
        let decoder = png::Decoder::new(Cursor::new(&bytes));
        let reader = decoder.read_info().unwrap();
        let text = &reader.info().utf8_text;
        assert_eq!(text.len(), 1);
        assert_eq!(text[0].keyword, "parameters");
        assert_eq!(text[0].get_text().unwrap(), "a cat\nSteps: 20");
        let back = decode(&bytes, 1 << 20).unwrap();
        assert_eq!(back.pixels, img.pixels);
    }

    #[test]
    fn jpeg_and_webp_decode_to_the_same_size() {
        let img = gradient();
        for format in [OutputFormat::Jpeg, OutputFormat::Webp] {
            let bytes = encode(&img, format, "").unwrap();
            let back = decode(&bytes, 1 << 20).unwrap();
            assert_eq!((back.width, back.height), (16, 8), "{format:?}");
        }
        let webp = decode(&encode(&img, OutputFormat::Webp, "").unwrap(), 1 << 20).unwrap();
        assert_eq!(webp.pixels, img.pixels, "lossless WebP");
    }

    #[test]
    fn decode_refuses_oversized_and_garbage() {
        let bytes = encode(&gradient(), OutputFormat::Png, "").unwrap();
        assert!(decode(&bytes, 100).unwrap_err().contains("16x8"));
        assert!(decode(b"not an image", 1 << 20).is_err());
    }
}
