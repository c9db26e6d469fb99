//! The real edge worker (built by `scripts/build-edge.sh`) under workerd, run
//! directly: one process, ready in well under a second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, Scratch, free_port};
use crate::{http, wait};

/// How long workerd may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// A running workerd serving the edge worker; stopped on drop.
#[derive(Debug)]
pub struct EdgeWorker {
    /// Where it listens.
    pub addr: SocketAddr,
    _guard: ChildGuard,
}

fn capnp_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

impl EdgeWorker {
    /// Starts workerd with the built worker and these text bindings (vars and secrets).
    pub fn start(scratch: &Scratch, bindings: &[(&str, &str)]) -> Self {
        let root = repo_root();
        let build = root.join("edge/build");
        let workerd = root.join("node_modules/.bin/workerd");
        assert!(
            build.join("index_bg.wasm").exists() && workerd.exists(),
            "the edge worker is not built: run `bash scripts/build-edge.sh` (the README test command does)"
        );
        let port = free_port();
        let bindings: Vec<String> = bindings
            .iter()
            .map(|(name, value)| {
                format!(
                    "    (name = {}, text = {}),",
                    capnp_string(name),
                    capnp_string(value)
                )
            })
            .collect();
        let config = format!(
            r#"using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .edge),
    # The default internet service blocks loopback, where the test bridge runs.
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:{port}", http = (), service = "main") ],
);

const edge :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed {index}),
    (name = "index_bg.wasm", wasm = embed {wasm}),
  ],
  compatibilityDate = "2026-04-01",
  bindings = [
{bindings}
  ],
  globalOutbound = "net",
);
"#,
            index = capnp_string("index.js"),
            wasm = capnp_string("index_bg.wasm"),
            bindings = bindings.join("\n"),
        );
        // `embed` paths are relative to the config file: put the build beside it.
        for file in ["index.js", "index_bg.wasm"] {
            std::fs::copy(build.join(file), scratch.file(file)).expect("copy the edge build");
        }
        let path = scratch.file("edge.capnp");
        std::fs::write(&path, config).expect("write workerd config");
        let mut cmd = Command::new(workerd);
        cmd.arg("serve").arg(&path).arg("--verbose");
        let mut guard = ChildGuard::spawn("workerd", cmd, &scratch.file("workerd.log"), false);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait::until("workerd to answer /health", READY_TIMEOUT, || {
            assert!(
                guard.is_running(),
                "workerd exited; see {}",
                scratch.file("workerd.log").display()
            );
            std::net::TcpStream::connect(addr).ok()?;
            (http::request(addr, "GET", "/health", b"").status == 200).then_some(())
        });
        EdgeWorker {
            addr,
            _guard: guard,
        }
    }
}
