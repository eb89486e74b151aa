//! The few numpy and torch array routines diffusers' schedules use, reproduced to the last bit
//! where that is cheap (timesteps are rounded, so their inputs must match exactly).

/// `np.linspace(start, stop, num)` in float64: `i * step + start`, the last value exactly `stop`.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> =
        if step == 0.0 { (0..num).map(|i| i as f64 / div * delta + start).collect() } else { (0..num).map(|i| i as f64 * step + start).collect() };
    y[num - 1] = stop;
    y
}

/// `np.arange(start, stop, step)` with a float step: `start + i * delta` where numpy's fill
/// recomputes `delta = (start + step) - start`.
pub(crate) fn np_arange_f64(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    out.push(start);
    if len > 1 {
        let second = start + step;
        out.push(second);
        let delta = second - start;
        for i in 2..len {
            out.push(start + i as f64 * delta);
        }
    }
    out
}

/// `np.round`: round half to even.
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, arange(len(fp)), fp)` for float32 table values, computed in float64.
pub(crate) fn np_interp_index(x: f64, fp: &[f32]) -> f64 {
    let n = fp.len();
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return fp[0] as f64;
    }
    let last = (n - 1) as f64;
    if x >= last {
        return fp[n - 1] as f64;
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return fp[j] as f64;
    }
    let (y0, y1) = (fp[j] as f64, fp[j + 1] as f64);
    let slope = (y1 - y0) / 1.0;
    let r = slope * (x - j as f64) + y0;
    if r.is_nan() {
        let r2 = slope * (x - (j + 1) as f64) + y1;
        if r2.is_nan() && y0 == y1 {
            return y0;
        }
        return r2;
    }
    r
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the step is computed in
/// float32 and each value with a fused multiply-add from the nearer end.
pub(crate) fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if steps == 0 {
        return Vec::new();
    }
    if steps == 1 {
        return vec![s];
    }
    let step = (e - s) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps).map(|i| if i < halfway { step.mul_add(i as f32, s) } else { (-step).mul_add((steps - i - 1) as f32, e) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_endpoints() {
        let v = np_linspace(0.0, 999.0, 7);
        assert_eq!(v, vec![0.0, 166.5, 333.0, 499.5, 666.0, 832.5, 999.0]);
        assert_eq!(np_linspace(3.0, 5.0, 1), vec![3.0]);
    }

    #[test]
    fn arange_lengths() {
        assert_eq!(np_arange_f64(1000.0, 0.0, -100.0).len(), 10);
        // numpy's length is ceil((stop - start) / step): 1000 / (1000 / 61) rounds to just above
        // 61, so there are 62 values (the last near 0); diffusers keeps them all.
        let long = [61usize, 103, 121, 122, 201];
        for n in 1..=205usize {
            let expect = if long.contains(&n) { n + 1 } else { n };
            assert_eq!(np_arange_f64(1000.0, 0.0, -1000.0 / n as f64).len(), expect, "n={n}");
        }
    }

    #[test]
    fn round_half_even() {
        assert_eq!(np_round(937.5), 938.0);
        assert_eq!(np_round(812.5), 812.0);
        assert_eq!(np_round(-0.5), -0.0);
    }
}
