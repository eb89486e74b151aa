//! What the benchmarks share: a fresh deployment of the real binaries (a new database and Redis
//! prefix, `darkroom-api` for the admin commands and `serve`, N `darkroom-worker`s) and small
//! statistics. Each binary includes it with `mod common;`.
// Each benchmark binary uses part of this module.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// A child process, killed when dropped.
pub struct Proc(Child);

impl Proc {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a process and wait for a line of its stderr containing `ready`; returns that line.
pub fn start(cmd: &mut Command, ready: &str) -> anyhow::Result<(Proc, String)> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stderr = child.stderr.take().context("stderr")?;
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains(&ready) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).context("the process did not become ready")?;
    Ok((proc, line))
}

/// The `p`th percentile (nearest rank) of sorted values; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A deployment on a fresh database (`darkroom_bench_{id}`) and Redis prefix.
pub struct Deployment {
    pub id: String,
    pub database_url: String,
    postgres: String,
    env: Vec<(&'static str, String)>,
    api_bin: PathBuf,
    worker_bin: PathBuf,
}

impl Deployment {
    /// `postgres`: the server's URL without a database name.
    pub fn new(bin_dir: &Path, postgres: &str, redis_url: &str) -> Deployment {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database_url = format!("{postgres}/darkroom_bench_{id}");
        let env = vec![
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", redis_url.to_string()),
            ("DARKROOM_REDIS_PREFIX", format!("darkroom_bench_{id}")),
            ("RUST_LOG", "warn,darkroom_worker::service=info,darkroom_api=info".into()),
        ];
        Deployment { id, database_url, postgres: postgres.to_string(), env, api_bin: bin_dir.join("darkroom-api"), worker_bin: bin_dir.join("darkroom-worker") }
    }

    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    }

    /// Run `darkroom-api ARGS` to completion; returns the last line of its stdout, trimmed.
    pub fn admin(&self, a: &[&str]) -> anyhow::Result<String> {
        let o = self.command(&self.api_bin).args(a).output()?;
        if !o.status.success() {
            bail!("darkroom-api {a:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").trim().to_string())
    }

    /// Start `darkroom-api serve` on a free port; returns the process and its base URL.
    pub fn serve(&self) -> anyhow::Result<(Proc, String)> {
        let (api, line) = start(self.command(&self.api_bin).args(["serve", "--listen", "127.0.0.1:0"]), "listening on http://")?;
        let base = format!("http://{}", line.split("listening on http://").nth(1).context("address")?.trim());
        Ok((api, base))
    }

    /// Start `n` CPU workers (one ONNX Runtime thread each) serving `model_dir` as `tiny`, and
    /// wait until each waits for jobs.
    pub fn workers(&self, n: usize, model_dir: &Path) -> anyhow::Result<Vec<Proc>> {
        let model = format!("tiny={}", model_dir.display());
        let mut workers = Vec::new();
        for _ in 0..n {
            let (w, _) = start(self.command(&self.worker_bin).args(["run", "--ep", "cpu", "--threads", "1", "--model", &model]), "waiting for jobs")?;
            workers.push(w);
        }
        Ok(workers)
    }

    /// Drop the database (best effort).
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        sqlx::query(&format!("DROP DATABASE IF EXISTS darkroom_bench_{} WITH (FORCE)", self.id))
            .execute(&sqlx::PgPool::connect(&format!("{}/postgres", self.postgres)).await?)
            .await
            .ok();
        Ok(())
    }
}
