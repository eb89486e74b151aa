//! torch's CPU generator (mt19937 + torch.randn's Box-Muller), so a seed gives diffusers' latents.
//! (placeholder signature; implementation in progress)
pub struct TorchRng;
impl TorchRng {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(_seed: u64) -> Self { TorchRng }
    /// `torch.randn(n, generator=g)` for float32, flattened.
    pub fn randn(&mut self, n: usize) -> Vec<f32> { vec![0.0; n] }
}
