//! torch's CPU random generator, reproduced so that a seed gives the latents diffusers gives.
//!
//! diffusers users seed with `torch.Generator("cpu").manual_seed(seed)` and draw with
//! `torch.randn`. On the CPU that is an mt19937 engine; for float32 tensors of at least 16
//! elements `randn` first fills the tensor with uniforms (24 random bits each), then applies
//! Box–Muller in blocks of 16 (values 0..8 as u1, 8..16 as u2), recomputing the last 16 with
//! fresh uniforms when the size is not a multiple of 16. Smaller tensors go through torch's
//! scalar `normal_distribution<double>`, which caches its second Box–Muller value.

/// The Mersenne Twister (MT19937, 32-bit) exactly as `at::mt19937` seeds and steps it.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        // torch keeps a 64-bit seed but initialises the engine with its low 32 bits.
        let mut state = [0u32; 624];
        state[0] = seed as u32;
        for j in 1..624 {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// `torch.Generator("cpu").manual_seed(seed)`, with `torch.randn` for float32 tensors.
#[derive(Clone)]
pub struct TorchRng {
    engine: Mt19937,
    /// torch's cached second value of the scalar (double) Box–Muller transform.
    next_double_normal: Option<f64>,
}

impl TorchRng {
    /// A generator in the state `torch.Generator("cpu").manual_seed(seed)` leaves it.
    pub fn new(seed: u64) -> Self {
        TorchRng { engine: Mt19937::new(seed), next_double_normal: None }
    }

    /// A float32 uniform in [0, 1) from 24 random bits, as `uniform_real_distribution<float>`.
    fn uniform_f32(&mut self) -> f32 {
        ((self.engine.next_u32() & 0x00ff_ffff) as f64 / (1u64 << 24) as f64) as f32
    }

    /// A float64 uniform in [0, 1) from 53 random bits, as `uniform_real_distribution<double>`.
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        let bits = ((hi << 32) | lo) & ((1u64 << 53) - 1);
        bits as f64 / (1u64 << 53) as f64
    }

    /// `normal_distribution<double>`: one standard normal, caching the sine half.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.next_double_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(n, generator=g)` for float32, flattened (the shape does not change the values).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in 0..n / 16 {
            box_muller_16(&mut data[block * 16..block * 16 + 16]);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

/// torch's `normal_fill_16`: uniforms in, 16 standard normals out, in float32.
fn box_muller_16(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - data[j]; // [0, 1) -> (0, 1] for the logarithm
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = (2.0 * std::f64::consts::PI * u2 as f64) as f32;
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Case {
        seed: u64,
        /// Successive `torch.randn(size, generator=g)` calls on one generator and what each gave.
        draws: Vec<Draw>,
    }

    #[derive(Deserialize)]
    struct Draw {
        size: usize,
        values: Vec<f32>,
    }

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // The C++ standard requires the 10000th output of a default-seeded mt19937 to be 4123659995.
        let mut mt = Mt19937::new(5489);
        let v = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn randn_matches_torch() {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/reference/randn.json"));
        let cases: Vec<Case> = serde_json::from_str(text).expect("randn.json parses");
        assert!(cases.len() >= 5);
        for case in cases {
            let mut rng = TorchRng::new(case.seed);
            for draw in case.draws {
                let ours = rng.randn(draw.size);
                assert_eq!(ours.len(), draw.values.len());
                for (i, (a, b)) in ours.iter().zip(&draw.values).enumerate() {
                    // float rounding only: log/sin/cos of libm against torch's vectorised ones
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "seed {} size {} index {i}: {a} vs {b}", case.seed, draw.size);
                }
            }
        }
    }
}
