//! A model's state for clients that ask whether it is up and how long it would take to come up
//! (Hugging Face's `GET /status/{model}` and the 503 `estimated_time` of its serverless API).
//!
//! The estimate is the median of the start-up times (from the start of `darkroom-worker run` to
//! being ready to take jobs: its models' ONNX sessions created, backends connected) that the
//! newest `--load-estimate-window` workers serving the model recorded, or `--default-load-secs`
//! when none ever did. The median keeps one slow start (a cold disk cache, a busy host) from
//! moving it. With no worker running, it is the time a worker takes once started, which is what
//! a client waits for when something (an operator, an autoscaler) starts one; it cannot know how
//! long that something takes to react.
use std::time::Duration;

use super::Service;
use crate::error::ApiError;

/// A catalog model's state.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelState {
    /// Live workers serving it.
    pub live_workers: i64,
    /// The execution provider (`cpu`, `cuda`) of its live workers (`cuda` when any of them runs
    /// CUDA), else that of its newest recorded start; `None` when none was ever recorded.
    pub provider: Option<String>,
    /// How long a worker serving it takes to come up (see the module docs).
    pub estimated_load: Duration,
}

impl Service {
    /// The state of catalog model `id`; `None` when the catalog has no such model.
    pub async fn model_state(&self, id: &str) -> Result<Option<ModelState>, ApiError> {
        let live = self.settings.worker_live;
        let Some(info) = self.store.model(id, live).await? else { return Ok(None) };
        let history = self.store.load_history(id, self.settings.load_estimate_window, live).await?;
        Ok(Some(ModelState { live_workers: info.live_workers, provider: history.provider, estimated_load: self.estimate(&history.ready_secs) }))
    }

    /// How long a worker serving catalog model `id` takes to come up (see the module docs).
    pub async fn load_estimate(&self, id: &str) -> Result<Duration, ApiError> {
        let history = self.store.load_history(id, self.settings.load_estimate_window, self.settings.worker_live).await?;
        Ok(self.estimate(&history.ready_secs))
    }

    fn estimate(&self, recorded_secs: &[f64]) -> Duration {
        median(recorded_secs).map(Duration::from_secs_f64).unwrap_or(self.settings.default_load)
    }
}

/// The median of finite, non-negative values (the mean of the middle two for an even count);
/// `None` for none.
fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite() && *x >= 0.0).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_recorded_loads() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        // One very slow start does not move it.
        assert_eq!(median(&[2.0, 300.0, 3.0, 2.5, 2.2]), Some(2.5));
        assert_eq!(median(&[f64::NAN, -1.0, 5.0]), Some(5.0));
    }
}
