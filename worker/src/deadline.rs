//! A deadline per job: how long one job may run on this worker, from its estimated cost, and
//! what the worker does past it.
//!
//! - Past the deadline the pipeline is stopped at its next step (the step callback checks the
//!   clock, and the job's async supervisor raises the stop flag) and the job ends `failed` with
//!   error type `deadline_exceeded`; it is not retried, since it would only run as long again.
//! - A pipeline call still running [`DeadlinePolicy::hang_grace`] after the deadline (an ONNX
//!   Runtime call that hangs) cannot be interrupted and its thread cannot be killed: the worker
//!   stops renewing the lease, fails the job, marks itself stopped and exits with
//!   [`EXIT_HUNG`], so that its supervisor starts a fresh process.
use std::time::Duration;

/// The exit status of a worker that gave up on a hung pipeline call.
pub const EXIT_HUNG: i32 = 3;

/// No job's limit is longer than this (a huge cost must not overflow the clock).
const MAX_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// The worker's time limits (the `--job-deadline-*` and `--job-hang-grace-secs` flags).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeadlinePolicy {
    /// Every job may run this long...
    pub base: Duration,
    /// ...plus this per unit of its estimated cost (`darkroom_shared::cost`).
    pub per_cost: Duration,
    /// How long after the deadline a pipeline call that has not returned is waited for before
    /// the worker gives the job up and exits.
    pub hang_grace: Duration,
}

impl DeadlinePolicy {
    /// The policy from the flags' seconds (negative, NaN: 0; huge: capped at 30 days).
    pub fn from_secs(base: f64, per_cost: f64, hang_grace: f64) -> DeadlinePolicy {
        DeadlinePolicy { base: capped(base), per_cost: capped(per_cost), hang_grace: capped(hang_grace) }
    }

    /// How long a job of estimated `cost` may run.
    pub fn limit(&self, cost: f64) -> Duration {
        let secs = self.base.as_secs_f64() + self.per_cost.as_secs_f64() * cost.max(0.0);
        Duration::try_from_secs_f64(secs).map_or(MAX_LIMIT, |d| d.min(MAX_LIMIT))
    }

    /// How long after its start a job of estimated `cost` whose pipeline call has not returned
    /// is deemed hung: its limit plus the grace.
    pub fn hung_after(&self, cost: f64) -> Duration {
        self.limit(cost) + self.hang_grace
    }

    /// The job's error message: how long it ran, its limit and how to ask for less.
    pub fn exceeded_message(&self, ran: Duration, cost: f64) -> String {
        format!(
            "the job ran for {:.1} s, past this worker's limit of {:.1} s for a job of its size \
             ({:.0} s + {} s per unit of estimated cost, and this job's cost is {cost:.2}); \
             ask for fewer steps, fewer pixels (a smaller width × height) or fewer images",
            ran.as_secs_f64(),
            self.limit(cost).as_secs_f64(),
            self.base.as_secs_f64(),
            self.per_cost.as_secs_f64(),
        )
    }
}

fn capped(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).map_or(MAX_LIMIT, |d| d.min(MAX_LIMIT))
}

/// TEST ONLY: the variable that makes a worker's pipeline thread block forever once step N
/// (1-based, counted over all images) of a job is done, as a hung ONNX Runtime call would.
/// The integration tests (`tests/it/deadline.rs`) use it to exercise the hung-worker path;
/// never set it in production.
pub const TEST_HANG_ENV: &str = "DARKROOM_TEST_HANG_AT_STEP";

/// The step [`TEST_HANG_ENV`] asks to hang at, if set to a number.
pub fn test_hang_at_step() -> Option<usize> {
    std::env::var(TEST_HANG_ENV).ok()?.trim().parse().ok()
}

/// Block the calling thread forever (the [`TEST_HANG_ENV`] hook).
pub fn hang_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: f64, per_cost: f64) -> DeadlinePolicy {
        DeadlinePolicy { base: Duration::from_secs_f64(base), per_cost: Duration::from_secs_f64(per_cost), hang_grace: Duration::from_secs(1) }
    }

    #[test]
    fn the_limit_grows_with_the_cost() {
        assert_eq!(policy(300.0, 2.0).limit(0.0), Duration::from_secs(300));
        assert_eq!(policy(300.0, 2.0).limit(25.0), Duration::from_secs(350));
        assert_eq!(policy(300.0, 2.0).limit(-1.0), Duration::from_secs(300));
        assert_eq!(policy(300.0, 2.0).limit(f64::INFINITY), MAX_LIMIT);
        assert_eq!(policy(300.0, 2.0).limit(f64::NAN), Duration::from_secs(300));
        let huge = DeadlinePolicy::from_secs(1e300, -1.0, f64::NAN);
        assert_eq!((huge.base, huge.per_cost, huge.hang_grace), (MAX_LIMIT, Duration::ZERO, Duration::ZERO));
        assert_eq!(huge.hung_after(1.0), MAX_LIMIT);
    }

    #[test]
    fn the_message_says_how_long_the_limit_and_what_to_do() {
        let m = policy(1.0, 0.5).exceeded_message(Duration::from_millis(2500), 2.0);
        assert!(m.contains("ran for 2.5 s") && m.contains("limit of 2.0 s") && m.contains("fewer steps"), "{m}");
    }
}
