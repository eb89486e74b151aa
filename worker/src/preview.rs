//! Live previews: a running job's latents turned into a small RGB image by a fixed linear map
//! per model family (what AUTOMATIC1111 calls "Approx cheap"), not a VAE decode.
//!
//! Each latent pixel becomes one RGB pixel (an image of ⌊H/8⌋×⌊W/8⌋): every channel of the
//! colour is a weighted sum of the 4 latent channels, mapped from [-1, 1] to [0, 255] and
//! clamped. The weights are the published least-squares fits of VAE-decoded colours to latents
//! (for SD 1.x, also used for 2.x, whose VAE is the same; and for SDXL's VAE), the values
//! AUTOMATIC1111's `cheap_approximation` uses. They act on the latents as the sampler holds
//! them (already multiplied by the VAE's scaling factor).
//!
//! The pipeline thread does only [`approximate`] (one multiply-add per latent value); the PNG
//! encoding ([`encode`]) runs on the service's async side.
use base64::Engine as _;
use darkroom_shared::store::Preview;

use crate::model::Family;
use crate::pipeline::RgbImage;

/// Latent channel `l` adds `COEFFS[l][c]` × its value to colour channel `c` (R, G, B).
type Coeffs = [[f32; 3]; 4];

/// SD 1.x and 2.x (the same VAE).
const SD: Coeffs = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];

/// SDXL's VAE.
const SDXL: Coeffs = [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]];

/// The latent channels the approximation takes (every SD 1.x/2.x/XL model has 4).
pub const LATENT_CHANNELS: usize = 4;

fn coeffs(family: Family) -> &'static Coeffs {
    match family {
        Family::Sd => &SD,
        Family::Sdxl => &SDXL,
    }
}

/// One image's latents, channel-major (`[4, height, width]`, as the UNet takes them), as an RGB
/// image of `width`×`height`; `None` when the latents are not 4 channels of that size.
pub fn approximate(family: Family, latents: &[f32], height: usize, width: usize) -> Option<RgbImage> {
    let plane = height * width;
    if plane == 0 || latents.len() != LATENT_CHANNELS * plane {
        return None;
    }
    let k = coeffs(family);
    // One row of weights per colour channel.
    let weights: [[f32; 4]; 3] = std::array::from_fn(|c| [k[0][c], k[1][c], k[2][c], k[3][c]]);
    let (l0, rest) = latents.split_at(plane);
    let (l1, rest) = rest.split_at(plane);
    let (l2, l3) = rest.split_at(plane);
    let mut pixels = vec![0u8; 3 * plane];
    for ((((&a, &b), &c), &d), px) in l0.iter().zip(l1).zip(l2).zip(l3).zip(pixels.chunks_exact_mut(3)) {
        for (w, out) in weights.iter().zip(px) {
            let x = w[0] * a + w[1] * b + w[2] * c + w[3] * d;
            // [-1, 1] to [0, 255], rounded half up by the truncating cast (a libm round() per
            // value would cost more than the rest); NaN (a diverged sample) casts to 0.
            *out = (x * 127.5 + 128.0).clamp(0.0, 255.0) as u8;
        }
    }
    Some(RgbImage { width, height, pixels })
}

#[derive(Debug, thiserror::Error)]
#[error("could not encode the preview as PNG: {0}")]
pub struct PreviewError(#[from] png::EncodingError);

/// The preview of `step` of `total` as the store keeps it: a PNG (fast compression: a
/// preview is small and short-lived), base64-encoded.
pub fn encode(image: &RgbImage, step: usize, total: usize) -> Result<Preview, PreviewError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.pixels)?;
    writer.finish()?;
    Ok(Preview {
        step: step as i32,
        total: total as i32,
        width: image.width as u32,
        height: image.height as u32,
        image: base64::engine::general_purpose::STANDARD.encode(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latents of `h`×`w` with every pixel holding `v` (one value per channel).
    fn uniform(v: [f32; 4], h: usize, w: usize) -> Vec<f32> {
        v.iter().flat_map(|&x| std::iter::repeat_n(x, h * w)).collect()
    }

    fn px(img: &RgbImage, i: usize) -> [u8; 3] {
        [img.pixels[3 * i], img.pixels[3 * i + 1], img.pixels[3 * i + 2]]
    }

    #[test]
    fn zero_latents_are_mid_grey() {
        for family in [Family::Sd, Family::Sdxl] {
            let img = approximate(family, &uniform([0.0; 4], 2, 3), 2, 3).unwrap();
            assert_eq!((img.width, img.height, img.pixels.len()), (3, 2, 18));
            assert!(img.pixels.iter().all(|&p| p == 128), "{:?}", img.pixels);
        }
    }

    #[test]
    fn known_latents_give_the_expected_colours() {
        // SD: channel 0 at 1 is (0.298, 0.207, 0.208) → 255 × (0.649, 0.6035, 0.604).
        let img = approximate(Family::Sd, &uniform([1.0, 0.0, 0.0, 0.0], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [165, 154, 154]);
        // SD: channel 3 at 1 is bluish-dark: (-0.184, -0.271, -0.473) → (0.408, 0.3645, 0.2635).
        let img = approximate(Family::Sd, &uniform([0.0, 0.0, 0.0, 1.0], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [104, 93, 67]);
        // SDXL: channel 1 at -1 is (0.1953, 0.029, -0.025) → (0.59765, 0.5145, 0.4875).
        let img = approximate(Family::Sdxl, &uniform([0.0, -1.0, 0.0, 0.0], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [152, 131, 124]);
        // The families differ.
        let v = uniform([0.5, -0.5, 0.5, -0.5], 1, 1);
        assert_ne!(approximate(Family::Sd, &v, 1, 1).unwrap().pixels, approximate(Family::Sdxl, &v, 1, 1).unwrap().pixels);
    }

    #[test]
    fn colours_are_clamped_and_nan_is_black() {
        let img = approximate(Family::Sd, &uniform([10.0, 10.0, 10.0, -10.0], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [255, 255, 255]);
        let img = approximate(Family::Sd, &uniform([-10.0, -10.0, -10.0, 10.0], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [0, 0, 0]);
        let img = approximate(Family::Sdxl, &uniform([f32::NAN; 4], 1, 1), 1, 1).unwrap();
        assert_eq!(px(&img, 0), [0, 0, 0]);
    }

    #[test]
    fn pixels_are_row_major_from_channel_major_latents() {
        // 2 rows × 3 columns; only pixel (row 1, column 2) is set: bright in every colour.
        let mut latents = vec![0.0; 4 * 6];
        (latents[5], latents[3 * 6 + 5]) = (10.0, -10.0);
        let img = approximate(Family::Sd, &latents, 2, 3).unwrap();
        for i in 0..5 {
            assert_eq!(px(&img, i), [128, 128, 128]);
        }
        assert_eq!(px(&img, 5), [255, 255, 255]);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(approximate(Family::Sd, &[0.0; 15], 2, 2).is_none());
        assert!(approximate(Family::Sd, &[], 0, 0).is_none());
    }

    #[test]
    fn previews_are_decodable_pngs_of_the_latent_size() {
        let latents: Vec<f32> = (0..4 * 8 * 16).map(|i| (i as f32 * 0.37).sin()).collect();
        let img = approximate(Family::Sdxl, &latents, 8, 16).unwrap();
        let p = encode(&img, 3, 10).unwrap();
        assert_eq!((p.step, p.total, p.width, p.height), (3, 10, 16, 8));
        let bytes = base64::engine::general_purpose::STANDARD.decode(&p.image).unwrap();
        let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (16, 8));
        assert_eq!(decoded.into_raw(), img.pixels);
    }
}
