//! Processes the service tests start besides the API: real `darkroom-worker run` processes on
//! the tiny models, and Redis servers of their own (for tests that flush or restart Redis).
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{model_dir, worker_bin, ServiceEnv};

/// A running `darkroom-worker run`, killed on drop; its log is kept for failure messages.
pub struct Worker {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Worker {
    /// Start a CPU worker serving `tiny-sd15` as model `tiny`, with `env`'s settings plus
    /// `extra` variables, and wait until it waits for jobs.
    pub fn start(env: &ServiceEnv, extra: &[(&str, &str)]) -> Worker {
        Worker::serving(env, &format!("tiny={}", model_dir("tiny-sd15").display()), extra)
    }

    /// As [`Worker::start`], serving `model` (`NAME=DIR`).
    pub fn serving(env: &ServiceEnv, model: &str, extra: &[(&str, &str)]) -> Worker {
        let mut child = Command::new(worker_bin())
            .args(["run", "--ep", "cpu", "--threads", "1", "--model", model])
            .envs(env.vars())
            .env("DARKROOM_HEARTBEAT_SECS", "0.5")
            .env("DARKROOM_RECOVERY_SECS", "0.3")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("darkroom-worker run starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("waiting for jobs") {
                    let _ = tx.send(());
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("darkroom-worker did not start:\n{}", log.lock().unwrap_or_else(|e| e.into_inner()));
        }
        Worker { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (`KILL`, `TERM`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait (up to `timeout`) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.signal_quietly("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn signal_quietly(&self, name: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).stderr(Stdio::null()).status()
    }
}

/// A Redis server of the test's own, without persistence, on a free port.
pub struct OwnRedis {
    child: Child,
    pub port: u16,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        OwnRedis::start_on(port)
    }

    /// Start (or restart) on `port`; waits until it answers.
    pub fn start_on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (tools/services.sh installs it)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop the server (its data is gone: it keeps nothing on disk).
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
