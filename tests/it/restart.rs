//! Postgres restarted under load, on a Postgres of the test's own: requests waiting for their
//! jobs (`Prefer: wait` and the blocking dialects) wait through the outage and resolve promptly
//! once Postgres is back, jobs that finish during the outage are recorded (not run again), and
//! no request gets a 5xx other than a 503 with `Retry-After`.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{scratch, ApiServer, ServiceEnv};
use crate::workers::Worker;

/// How soon after Postgres accepts connections again every waiter whose job finished during the
/// outage must have its answer: the promise, 2 s, plus a margin of 0.5 s for a busy 2-core
/// machine. (Measured: 0.3-0.8 s; the measured times are printed.)
const PROMPTLY: Duration = Duration::from_millis(2500);

/// How long the outage goes on once both workers are retrying their completion.
const HOLD: Duration = Duration::from_secs(3);

/// A Postgres server of the test's own (trust authentication, no durability), on a free port.
/// Run as the `postgres` user when the test runs as root, which Postgres refuses.
struct OwnPostgres {
    data: PathBuf,
    log: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    /// A directory outside the target dir, removed at the end.
    temporary: Option<PathBuf>,
}

impl OwnPostgres {
    /// `initdb` a fresh cluster in the scratch directory `name`. Run as the postgres user, the
    /// cluster lives under the system's temporary directory instead: the checkout may sit in a
    /// directory that user cannot enter (a clone in `mktemp -d`, or under `/root`).
    fn init(name: &str) -> OwnPostgres {
        let user = unprivileged_user();
        let dir = match user {
            None => scratch(name),
            Some((uid, gid)) => {
                let dir = std::env::temp_dir().join(format!("darkroom-{name}-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("a directory for the cluster");
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("the cluster's directory given to the postgres user");
                dir
            }
        };
        let temporary = user.is_some().then(|| dir.clone());
        let data = dir.join("data");
        let out = command("initdb", user)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--no-instructions"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        OwnPostgres { data, log: dir.join("postgres.log"), port, user, child: None, temporary }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Start the server (it is up once [`OwnPostgres::ready`] returns).
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("postgres log file");
        let child = command("postgres", self.user)
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
    }

    /// Wait until a new session can run a query; the moment it first could.
    async fn ready(&self) -> Instant {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = sqlx::PgConnection::connect(&self.url("postgres")).await {
                if sqlx::query("SELECT 1").execute(&mut c).await.is_ok() {
                    let at = Instant::now();
                    let _ = c.close().await;
                    return at;
                }
            }
            assert!(Instant::now() < until, "postgres did not come up:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A fast shutdown (SIGINT): sessions are ended with 57P01 (administrator shutdown).
    fn stop_fast(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop_fast();
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The postgres user's uid and gid when this process is root; `None` otherwise.
fn unprivileged_user() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().expect("id runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    (id(&["-u"]) == 0).then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

/// A Postgres program of the newest version installed, run as `user` when given.
fn command(program: &str, user: Option<(u32, u32)>) -> Command {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(program))))
        .filter(|(_, p)| p.exists())
        .collect();
    versions.sort();
    let (_, path) = versions.pop().unwrap_or_else(|| panic!("no {program} under /usr/lib/postgresql/*/bin"));
    let mut cmd = Command::new(path);
    // A directory every user may enter (the test's own may not be, for the postgres user).
    cmd.current_dir("/");
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// The status and `attempts` of every job, oldest first, read on a session of its own.
async fn jobs(url: &str) -> Vec<(String, i32)> {
    let mut c = sqlx::PgConnection::connect(url).await.expect("the test's database");
    sqlx::query_as::<_, (String, i32)>("SELECT status::text, attempts FROM jobs ORDER BY created_at").fetch_all(&mut c).await.expect("jobs")
}

/// Poll the jobs (every 20 ms, for at most a minute) until `done` holds of them.
async fn settle(url: &str, what: &str, done: impl Fn(&[(String, i32)]) -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let now = jobs(url).await;
        if done(&now) {
            return;
        }
        assert!(Instant::now() < until, "never {what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request's outcome: status, `Retry-After`, body, and when the answer had fully arrived.
type Answer = (u16, Option<String>, Value, Instant);

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.timeout(Duration::from_secs(120)).send().await.expect("the API answers");
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = r.json().await.unwrap_or(Value::Null);
    (status, retry_after, body, Instant::now())
}

/// Whether an answer is one a client may get during an outage: no 5xx but a 503 with `Retry-After`.
fn acceptable(a: &Answer) -> bool {
    a.0 < 500 || (a.0 == 503 && a.1.as_deref().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_resolve_promptly_after_a_postgres_restart() {
    let mut pg = OwnPostgres::init("restart");
    pg.start();
    pg.ready().await;
    let mut env = ServiceEnv::new();
    env.database_url = pg.url(&env.database);
    let token = env.tenant_with_token("acme");
    let server = ApiServer::start(&env, &[]);
    let workers = [Worker::start(&env, &[]), Worker::start(&env, &[])];
    let http = reqwest::Client::new();
    let (api, db) = (server.base.clone(), env.database_url.clone());

    // Seconds long on the tiny model, so that each is caught running.
    let steps = 100;
    let native = |seed: u64| json!({"model": "tiny", "prompt": "a lighthouse", "width": 64, "height": 64, "steps": steps, "seed": seed});
    let wait_native = |seed: u64| {
        let req = http.post(format!("{api}/v1/jobs")).bearer_auth(&token).header("Prefer", "wait=120").json(&native(seed));
        tokio::spawn(send(req))
    };
    // The two jobs the two workers run when Postgres stops: a `Prefer: wait` and a blocking dialect.
    let a = wait_native(1);
    let hf = json!({"inputs": "a lighthouse", "parameters": {"width": 64, "height": 64, "num_inference_steps": steps, "seed": 2}});
    let b = tokio::spawn(send(http.post(format!("{api}/models/tiny")).bearer_auth(&token).header("accept", "image/png").json(&hf)));
    settle(&db, "the first two jobs submitted", |jobs| jobs.len() == 2).await;
    // Two more that wait in the queue meanwhile: AUTOMATIC1111 (blocking) and `Prefer: wait`.
    let a1111 = json!({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": steps, "seed": 3});
    let c = tokio::spawn(send(http.post(format!("{api}/sdapi/v1/txt2img")).basic_auth("admin", Some(&token)).json(&a1111)));
    let d = wait_native(4);

    // Requests keep coming during the outage (and across both of its edges).
    let polling = Arc::new(AtomicBool::new(true));
    let pollers: Vec<_> = ["/v1/jobs", "/v1/models", "/sdapi/v1/options"]
        .into_iter()
        .map(|path| {
            let (http, url, token, polling) = (http.clone(), format!("{api}{path}"), token.clone(), polling.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while polling.load(Ordering::SeqCst) {
                    answers.push((path, send(http.get(&url).basic_auth("admin", Some(&token))).await));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answers
            })
        })
        .collect();
    let (running, queued) = (|j: &(String, i32)| j.0 == "running", |j: &(String, i32)| j.0 == "queued");
    settle(&db, "the first two jobs running, the last two queued", |jobs| jobs.len() == 4 && jobs[..2].iter().all(running) && jobs[2..].iter().all(queued))
        .await;

    pg.stop_fast();
    let stopped = Instant::now();
    // New work during the outage: refused with 503, never left hanging.
    let outage: Vec<_> = vec![
        tokio::spawn(send(http.post(format!("{api}/v1/jobs")).bearer_auth(&token).json(&native(5)))),
        tokio::spawn(send(http.post(format!("{api}/v1/jobs")).bearer_auth(&token).header("Prefer", "wait=10").json(&native(6)))),
        tokio::spawn(send(http.post(format!("{api}/models/tiny")).bearer_auth(&token).json(&hf))),
        tokio::spawn(send(http.post(format!("{api}/sdapi/v1/txt2img")).basic_auth("admin", Some(&token)).json(&a1111))),
    ];
    // Both workers finish their job during the outage and keep their images, retrying the write.
    let until = Instant::now() + Duration::from_secs(30);
    while !workers.iter().all(|w| w.log().contains("Postgres unavailable")) {
        assert!(Instant::now() < until, "the workers never retried their completion:\n{}\n{}", workers[0].log(), workers[1].log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retrying = stopped.elapsed().as_secs_f64();
    // Hold the outage a while longer, so that every loop reconnecting to Postgres (the workers'
    // completions, the API's pool, listener and sweep) is well into its backoff when it ends.
    tokio::time::sleep(HOLD).await;
    let [a, b, c, d] = [("Prefer: wait", a), ("HF serverless", b), ("A1111", c), ("Prefer: wait (queued)", d)].map(|(name, waiter)| {
        assert!(!waiter.is_finished(), "{name}: the waiter was answered during the outage instead of waiting on:\n{}", server.log());
        waiter
    });
    for r in outage {
        let answer = r.await.expect("request task");
        assert!(answer.0 == 503 && acceptable(&answer), "new work during the outage: {:?}", (answer.0, &answer.1, &answer.2));
    }

    pg.start();
    let back = pg.ready().await;
    let outage_secs = back.duration_since(stopped).as_secs_f64();
    let mut resolved = Vec::new();
    for (name, waiter) in [("Prefer: wait", a), ("HF serverless", b)] {
        let answer =
            tokio::time::timeout(Duration::from_secs(30), waiter).await.unwrap_or_else(|_| panic!("{name}: no answer\n{}", server.log())).expect("waiter");
        assert_eq!(answer.0, 200, "{name}: {:?}\n{}", answer.2, server.log());
        let after = answer.3.saturating_duration_since(back);
        resolved.push((name, after));
        if name == "Prefer: wait" {
            assert_eq!(answer.2["status"], "succeeded", "{name}: the finished job: {}", answer.2);
            assert_eq!(answer.2["images"].as_array().map(Vec::len), Some(1), "{name}: {}", answer.2);
        }
    }
    println!("outage {outage_secs:.2} s (both workers retrying their completion after {retrying:.2} s); answered after Postgres was back: {resolved:?}");
    for (name, after) in &resolved {
        assert!(*after <= PROMPTLY, "{name}: answered {after:?} after Postgres was back\n{}", server.log());
    }
    // The queued ones run once Postgres is back.
    for (name, waiter) in [("A1111", c), ("Prefer: wait (queued)", d)] {
        let answer =
            tokio::time::timeout(Duration::from_secs(60), waiter).await.unwrap_or_else(|_| panic!("{name}: no answer\n{}", server.log())).expect("waiter");
        assert_eq!(answer.0, 200, "{name}: {:?}\n{}", answer.2, server.log());
    }
    polling.store(false, Ordering::SeqCst);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for poller in pollers {
        for (path, answer) in poller.await.expect("poller") {
            assert!(acceptable(&answer), "GET {path} around the outage: {} {:?} {}", answer.0, answer.1, answer.2);
            *statuses.entry(answer.0).or_default() += 1;
        }
    }
    println!("answers to the requests sent around the outage, by status: {statuses:?}");
    assert!(statuses.contains_key(&503) && statuses.contains_key(&200), "requests were answered both during and after the outage: {statuses:?}");
    // Every job ran once: none was handed to a worker again after the outage.
    let all = jobs(&db).await;
    assert_eq!(all.len(), 4, "no job was made by the requests refused during the outage: {all:?}");
    assert!(all.iter().all(|(s, attempts)| s == "succeeded" && *attempts == 1), "every job succeeded on its first attempt: {all:?}\n{}", server.log());
    assert!(!server.log().contains("answering 500"), "{}", server.log());
}
