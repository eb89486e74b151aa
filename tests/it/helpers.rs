//! Helpers shared by the end-to-end tests: fixture paths, a shared ONNX Runtime, image diffs.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use darkroom_worker::pipeline::RgbImage;
use darkroom_worker::runtime::{ProviderChoice, Runtime};

/// The repository's tests/fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// One CPU runtime for the whole test binary (ONNX Runtime's environment is process-wide).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(ProviderChoice::Cpu, Some(1)).expect("ONNX Runtime loads: run tools/setup-ort.sh"))
}

/// Decode a PNG file into RGB.
pub fn read_png(path: &Path) -> RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    RgbImage { width: img.width() as usize, height: img.height() as usize, pixels: img.into_raw() }
}

/// The largest per-channel difference between two images of the same size.
pub fn max_pixel_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height), "image sizes differ");
    a.pixels.iter().zip(&b.pixels).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// The worker binary built alongside this test binary.
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("darkroom-worker")
}

/// A fresh empty directory under the target dir, removed at the start of the next run.
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("deps dir").join("scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// The job service: a fresh database and Redis prefix per test, the real `darkroom-api` binary.
// ---------------------------------------------------------------------------------------------

/// The local Postgres (trust auth, user postgres) and Redis the service tests use.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The API binary built alongside this test binary. `cargo test -p darkroom-tests` does not
/// build other packages' binaries, so it is built (once per test run) when this is first called.
pub fn api_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "darkroom-api", "--bin", "darkroom-api"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo runs");
            assert!(status.success(), "building darkroom-api failed");
            profile_dir.join("darkroom-api")
        })
        .clone()
}

/// Every route that takes a token, with its method: the boundary and fuzz tests go through them
/// all. Routes whose handler reads a body and those that do not are both here: none may read one
/// before authenticating.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/0190e0a4-0000-7000-8000-000000000000"),
    ("POST", "/v1/jobs/0190e0a4-0000-7000-8000-000000000000/cancel"),
    ("GET", "/v1/jobs/0190e0a4-0000-7000-8000-000000000000/events"),
    ("GET", "/v1/jobs/0190e0a4-0000-7000-8000-000000000000/images/0"),
    ("GET", "/v1/models"),
    ("POST", "/"),
    ("POST", "/models/tiny"),
    ("POST", "/models/org/some-model"),
    ("GET", "/status/tiny"),
    ("GET", "/status/org/some-model"),
    ("POST", "/v1/image/generation"),
    ("POST", "/sdapi/v1/txt2img"),
    ("POST", "/sdapi/v1/img2img"),
    ("GET", "/sdapi/v1/sd-models"),
    ("GET", "/sdapi/v1/options"),
    ("POST", "/sdapi/v1/options"),
    ("GET", "/sdapi/v1/samplers"),
    ("GET", "/sdapi/v1/schedulers"),
    ("GET", "/sdapi/v1/progress"),
    ("POST", "/sdapi/v1/interrupt"),
    ("POST", "/sdapi/v1/skip"),
    ("GET", "/sdapi/v1/scripts"),
];

/// A fresh database (created by the API on first use) and Redis key prefix, dropped at the end.
pub struct ServiceEnv {
    pub database_url: String,
    pub database: String,
    pub redis_prefix: String,
}

impl ServiceEnv {
    pub fn new() -> ServiceEnv {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("darkroom_test_{id}");
        ServiceEnv { database_url: format!("{POSTGRES}/{database}"), database, redis_prefix: format!("darkroom_test_{id}") }
    }

    /// The environment `darkroom-api` reads its settings from.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", REDIS_URL.to_string()),
            ("DARKROOM_REDIS_PREFIX", self.redis_prefix.clone()),
            ("DARKROOM_DB_CONNECTIONS", "4".to_string()),
            ("RUST_LOG", "info,sqlx=warn".to_string()),
        ]
    }

    /// Run an administration command of the real binary.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(api_bin()).args(args).envs(self.vars()).output().expect("darkroom-api runs")
    }

    /// Create a tenant and issue it a token through the CLI; returns the token.
    pub fn tenant_with_token(&self, name: &str) -> String {
        let o = self.admin(&["tenant", "create", name]);
        assert!(o.status.success(), "tenant create: {}", String::from_utf8_lossy(&o.stderr));
        self.issue_token(name)
    }

    pub fn issue_token(&self, tenant: &str) -> String {
        let o = self.admin(&["token", "issue", tenant]);
        assert!(o.status.success(), "token issue: {}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        stdout.lines().last().expect("a token line").trim().to_string()
    }

    /// A direct connection to the test's database (for what workers do).
    pub async fn store(&self) -> darkroom_shared::store::Store {
        let store = darkroom_shared::store::Store::connect(&self.database_url, 4).await.expect("test database");
        store.migrate().await.expect("migrations");
        store
    }

    /// Put the tiny SD model (64×64, img2img) in the catalog, as a worker registering it would
    /// (for tests that need the catalog but run no worker).
    pub async fn register_tiny_model(&self) {
        let entry = darkroom_shared::store::ModelEntry {
            id: "tiny".into(),
            family: darkroom_shared::family::Family::Sd,
            native_size: 64,
            size_multiple: 8,
            img2img: true,
            sha256: None,
            path: None,
        };
        self.store().await.register_worker(uuid::Uuid::new_v4(), "test", &[entry]).await.expect("catalog");
    }

    /// A direct connection to the test's queue.
    pub async fn queue(&self) -> darkroom_shared::queue::Queue {
        darkroom_shared::queue::Queue::connect(REDIS_URL, &self.redis_prefix).await.expect("local Redis")
    }
}

impl Default for ServiceEnv {
    fn default() -> Self {
        ServiceEnv::new()
    }
}

impl Drop for ServiceEnv {
    fn drop(&mut self) {
        // Best effort, on a runtime of its own (Drop may run inside or outside one).
        let (database, prefix) = (self.database.clone(), self.redis_prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&format!("{POSTGRES}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)")).execute(&pool).await;
                }
                if let Ok(client) = redis::Client::open(REDIS_URL) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A running `darkroom-api serve`, killed on drop. Its log is kept in memory for failures.
pub struct ApiServer {
    child: std::process::Child,
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ApiServer {
    /// Start the server on a free port with `env`'s settings plus `extra` variables.
    pub fn start(env: &ServiceEnv, extra: &[(&str, &str)]) -> ApiServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(api_bin())
            .arg("serve")
            .envs(env.vars())
            .env("DARKROOM_LISTEN", "127.0.0.1:0")
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("darkroom-api serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                // The address ends the text line; in a JSON line, a quote ends it.
                if let Some(addr) = line.split("listening on http://").nth(1).and_then(|a| a.split(['"', ' ']).next()) {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(addr) => ApiServer { child, base: format!("http://{addr}"), log },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("darkroom-api serve did not start:\n{}", log.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait (up to `timeout`) for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder to `target` that a test can take down and bring back on the same port, to
/// play a backend outage.
pub struct TcpProxy {
    pub port: u16,
    target: String,
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> std::sync::Arc<TcpProxy> {
        let listener = Self::bind(0).await;
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = std::sync::Arc::new(TcpProxy { port, target: target.to_string(), tasks: Default::default() });
        proxy.serve(listener);
        proxy
    }

    async fn bind(port: u16) -> tokio::net::TcpListener {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([127, 0, 0, 1], port).into()).expect("proxy binds");
        socket.listen(64).expect("proxy listens")
    }

    fn serve(self: &std::sync::Arc<Self>, listener: tokio::net::TcpListener) {
        let me = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = me.target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                me.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(accept.abort_handle());
    }

    /// Refuse new connections and cut the open ones.
    pub fn down(&self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            t.abort();
        }
    }

    /// Accept connections again, on the same port.
    pub async fn up(self: &std::sync::Arc<Self>) {
        let listener = Self::bind(self.port).await;
        self.serve(listener);
    }
}
