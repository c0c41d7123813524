//! The production way of starting the parts (docs/deploy.md), without the launcher's
//! configuration generation:
//! - the files under `deploy/` are what the templates render today (no drift);
//! - the systemd units' own command lines (`Environment=`, `ExecStartPre=`, `ExecStart=`, parsed
//!   from `deploy/systemd/*.service`) start unbound, the scorer and Envoy on the production
//!   configuration rendered for a temporary directory and ephemeral ports (the only
//!   differences: `test_profile`), and kdig resolves an allowed and a deny-listed name through
//!   Envoy, both recorded in the Elasticsearch stand-in;
//! - the Kubernetes Envoy configuration loads in a real Envoy and its readiness listener
//!   answers `GET /ready` and nothing else.
//!
//! The launcher only owns the processes (log files, polling readiness, stop by PID), makes the
//! self-signed certificate, and runs osmem-server, the stand-in for the external Elasticsearch.
//! Needs `cargo xtask wasm` and `cargo build -p dohguard-scorer` first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use dohguard_launcher::deploy::{self, Ports, Profile, UnitCommands};
use dohguard_launcher::kdig::{self, Method};
use dohguard_launcher::osmem::Osmem;
use dohguard_launcher::paths::{filter_wasm, repo_root};
use dohguard_launcher::ports::free_port;
use dohguard_launcher::process::{http_ok, tcp_open, ManagedProcess};
use dohguard_launcher::scorer::{self, default_model_card};
use dohguard_launcher::tls::{self, TLS_HOSTNAME};
use dohguard_launcher::tools::{self, Tool};

/// In the demo zone the test installs as the installation's own local data.
const ALLOWED_NAME: &str = "www.example.test";
const ALLOWED_ADDRESS: &str = "192.0.2.10";

#[test]
fn committed_deployment_files_are_rendered_from_the_templates() -> anyhow::Result<()> {
    let root = repo_root();
    for (path, expected) in deploy::committed_files()? {
        let committed = std::fs::read_to_string(root.join(&path))
            .with_context(|| format!("reading {}", path.display()))?;
        assert!(
            committed == expected,
            "{} is stale: run `cargo xtask render` (first differing line: {:?})",
            path.display(),
            committed
                .lines()
                .zip(expected.lines())
                .find(|(a, b)| a != b)
        );
    }
    Ok(())
}

/// Ephemeral ports for every listener of the systemd profile.
fn ephemeral_ports() -> anyhow::Result<Ports> {
    Ok(Ports {
        admin: free_port()?,
        http: free_port()?,
        https: free_port()?,
        ready: None,
        unbound_doh: free_port()?,
        unbound_dns: free_port()?,
        scorer: free_port()?,
    })
}

/// The systemd profile with its paths under `root` (or at this machine's build outputs) and
/// ephemeral ports; everything else (addresses, recursion, threads, ...) is the production
/// value, except `data_stream`: osmem-server has no data streams and refuses those documents
/// (scorer/README.md), so the stand-in gets a plain index.
fn test_profile(root: &Path, ports: Ports, elasticsearch_url: String) -> anyhow::Result<Profile> {
    let production = Profile::systemd();
    let under_root = |path: &Path| root.join(path.strip_prefix("/").expect("absolute"));
    Ok(Profile {
        ports,
        wasm: filter_wasm()?,
        tls_cert: under_root(&production.tls_cert),
        // systemd's LoadCredential= copies /etc/dohguard/tls/key.pem there; here it is read in place.
        tls_key: root.join("etc/dohguard/tls/key.pem"),
        model_card: default_model_card()?,
        detector_cards: scorer::default_detector_cards()?,
        elasticsearch_url: Some(elasticsearch_url),
        data_stream: false,
        spool_dir: under_root(&production.spool_dir),
        unbound_dir: under_root(&production.unbound_dir),
        unbound_include: Some(
            root.join("etc/dohguard/unbound.d/*.conf")
                .display()
                .to_string(),
        ),
        ..production
    })
}

/// Maps the production paths in a unit's command line to this machine: the binaries to the
/// ones set-up installed or the build produced, `/etc/dohguard/` to `root`'s. Any other
/// absolute path is an error, so a unit and the profile cannot disagree unnoticed.
struct PathMap {
    exact: Vec<(&'static str, PathBuf)>,
    etc: PathBuf,
}

impl PathMap {
    fn new(root: &Path) -> anyhow::Result<Self> {
        let unbound = tools::find(Tool::Unbound)?;
        let checkconf = unbound.with_file_name("unbound-checkconf");
        ensure!(
            checkconf.is_file(),
            "{} missing (Debian package unbound)",
            checkconf.display()
        );
        let ort = std::env::var_os("ORT_DYLIB_PATH")
            .context("ORT_DYLIB_PATH is unset: source scripts/env.sh")?;
        Ok(Self {
            exact: vec![
                ("/usr/sbin/unbound", unbound),
                ("/usr/sbin/unbound-checkconf", checkconf),
                ("/usr/local/bin/envoy", tools::find(Tool::Envoy)?),
                ("/usr/local/bin/dohguard-scorer", scorer::binary()?),
                ("/usr/local/lib/dohguard/libonnxruntime.so", ort.into()),
            ],
            etc: root.join("etc/dohguard"),
        })
    }

    fn map(&self, word: &str) -> anyhow::Result<String> {
        if !word.starts_with('/') {
            return Ok(word.to_owned());
        }
        if let Some((_, local)) = self.exact.iter().find(|(prod, _)| *prod == word) {
            return Ok(local.display().to_string());
        }
        if let Some(rest) = word.strip_prefix("/etc/dohguard/") {
            return Ok(self.etc.join(rest).display().to_string());
        }
        bail!("no local equivalent for the production path {word}")
    }

    fn command(
        &self,
        words: &[String],
        unit: &UnitCommands,
        cwd: &Path,
    ) -> anyhow::Result<Command> {
        let mut command = Command::new(self.map(&words[0])?);
        for word in &words[1..] {
            command.arg(self.map(word)?);
        }
        for (key, value) in &unit.environment {
            command.env(key, self.map(value)?);
        }
        command.current_dir(cwd);
        Ok(command)
    }
}

/// Runs the unit's `ExecStartPre=` lines (each must succeed), then starts its `ExecStart=`.
fn start_unit(
    unit_name: &str,
    map: &PathMap,
    root: &Path,
    ready: impl FnMut() -> bool,
) -> anyhow::Result<ManagedProcess> {
    let unit = UnitCommands::read(unit_name)?;
    for pre in &unit.exec_start_pre {
        let output = map
            .command(pre, &unit, root)?
            .output()
            .with_context(|| format!("{unit_name}: running ExecStartPre {pre:?}"))?;
        ensure!(
            output.status.success(),
            "{unit_name}: ExecStartPre {pre:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let command = map.command(&unit.exec_start, &unit, root)?;
    let mut process =
        ManagedProcess::spawn(unit_name, command, &root.join(format!("{unit_name}.log")))?;
    process.wait_ready(Duration::from_secs(60), ready)?;
    Ok(process)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Polls the store until `name` has `count` verdict documents (more is an error), and returns them.
fn verdicts(store: &Osmem, name: &str, count: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let docs = store.verdicts_for(name)?;
        match docs.len() {
            n if n == count => return Ok(docs),
            n if n < count && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            n => bail!("{n} verdict documents for {name}, expected {count}: {docs:?}"),
        }
    }
}

#[test]
fn the_systemd_units_start_a_gateway_that_filters_and_records() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("dohguard-deploy-")
        .tempdir()?;
    // DOHGUARD_KEEP_RUN_DIR=1 keeps the files and logs (as for the launcher's stacks).
    // Declared before the processes, so it is removed after they stop.
    let (root, _remove_on_drop) = match std::env::var_os("DOHGUARD_KEEP_RUN_DIR") {
        Some(_) => (dir.keep(), None),
        None => (dir.path().to_path_buf(), Some(dir)),
    };
    let root = root.as_path();
    // External in production (no unit): the Elasticsearch-API stand-in.
    let store = Osmem::start(root, None)?;
    let ports = ephemeral_ports()?;
    let profile = test_profile(root, ports, store.url())?;

    // The installation's files, where the units read them.
    let rendered = deploy::render(&profile, &deploy::filter_config()?)?;
    let etc = root.join("etc/dohguard");
    write(&etc.join("envoy.yaml"), &rendered.envoy_yaml)?;
    write(&etc.join("unbound.conf"), &rendered.unbound_conf)?;
    write(&etc.join("scorer.toml"), &rendered.scorer_toml)?;
    write(
        &etc.join("unbound.d/demo.conf"),
        &format!(
            "local-zone: \"example.test.\" static\nlocal-data: \"{ALLOWED_NAME}. 300 IN A {ALLOWED_ADDRESS}\"\n"
        ),
    )?;
    let tls = tls::ensure_self_signed(&etc.join("tls"))?;
    // What systemd's RuntimeDirectory= and StateDirectory= would create.
    std::fs::create_dir_all(&profile.unbound_dir)?;
    std::fs::create_dir_all(profile.spool_dir.parent().expect("spool in a state folder"))?;

    let map = PathMap::new(root)?;
    let _unbound = start_unit("dohguard-unbound.service", &map, root, || {
        tcp_open(ports.unbound_doh)
    })?;
    let readyz = format!("http://127.0.0.1:{}/readyz", ports.scorer);
    let _scorer = start_unit("dohguard-scorer.service", &map, root, || http_ok(&readyz))?;
    let ready = format!("http://127.0.0.1:{}/ready", ports.admin);
    let _envoy = start_unit("dohguard-envoy.service", &map, root, || http_ok(&ready))?;

    let allowed = kdig::query_doh(
        ports.https,
        &tls.cert,
        TLS_HOSTNAME,
        Method::Post,
        ALLOWED_NAME,
        "A",
        true,
    )?;
    assert_eq!(allowed.status, "NOERROR", "{}", allowed.raw);
    assert_eq!(
        allowed.answer_data("A"),
        [ALLOWED_ADDRESS],
        "{}",
        allowed.raw
    );

    let denied_name = deploy::filter_config()?["deny"][0]
        .as_str()
        .context("deploy/filter.json has no deny list")?
        .to_owned();
    for method in [Method::Post, Method::Get] {
        let denied = kdig::query_doh(
            ports.https,
            &tls.cert,
            TLS_HOSTNAME,
            method,
            &denied_name,
            "A",
            true,
        )?;
        assert_eq!(denied.status, "NXDOMAIN", "{method:?}: {}", denied.raw);
        assert_eq!(denied.ede, [15], "{method:?}: {}", denied.raw);
    }

    // Every query on the record: the filter's decision events, through the scorer, in the store.
    let allowed_docs = verdicts(&store, ALLOWED_NAME, 1)?;
    assert_eq!(
        allowed_docs[0]["dohguard"]["verdict"], "allow",
        "{allowed_docs:?}"
    );
    for doc in verdicts(&store, &denied_name, 2)? {
        assert_eq!(doc["dohguard"]["verdict"], "block", "{doc}");
        assert_eq!(doc["dohguard"]["reason"], "deny_list", "{doc}");
    }
    Ok(())
}

#[test]
fn the_kubernetes_envoy_config_loads_and_its_readiness_listener_forwards_only_ready(
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("dohguard-k8s-").tempdir()?;
    let root = dir.path();
    let tls = tls::ensure_self_signed(&root.join("tls"))?;
    let ready_port = free_port()?;
    // The Kubernetes profile with the pod's mounts pointing at local files, loopback instead
    // of 0.0.0.0, ephemeral ports, and the scorer Service name replaced by one that resolves
    // here (the cluster is STRICT_DNS, as in the pod).
    let profile = Profile {
        listen_address: "127.0.0.1".into(),
        ports: Ports {
            ready: Some(ready_port),
            ..ephemeral_ports()?
        },
        wasm: filter_wasm()?,
        tls_cert: tls.cert.clone(),
        tls_key: tls.key.clone(),
        scorer_host: "localhost".into(),
        ..Profile::kubernetes()
    };
    assert_eq!(profile.scorer_discovery, "STRICT_DNS");
    let config = root.join("envoy.yaml");
    write(
        &config,
        &deploy::render(&profile, &deploy::filter_config()?)?.envoy_yaml,
    )?;
    let mut command = Command::new(tools::find(Tool::Envoy)?);
    command
        .arg("-c")
        .arg(&config)
        .args(["--disable-hot-restart", "--concurrency", "1"]);
    let mut envoy = ManagedProcess::spawn("envoy", command, &root.join("envoy.log"))?;
    let ready = format!("http://127.0.0.1:{ready_port}/ready");
    envoy.wait_ready(Duration::from_secs(60), || http_ok(&ready))?;
    let status = |path: &str| -> anyhow::Result<u16> {
        Ok(dohguard_launcher::http::get_text(&format!("http://127.0.0.1:{ready_port}{path}"))?.0)
    };
    assert_eq!(status("/ready")?, 200);
    for admin_only in ["/stats", "/config_dump", "/ready/x"] {
        assert_eq!(
            status(admin_only)?,
            404,
            "{admin_only} must not reach the admin interface"
        );
    }
    Ok(())
}

#[test]
fn the_kubernetes_scorer_and_unbound_configs_are_accepted_by_the_real_programs(
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("dohguard-k8s-").tempdir()?;
    let root = dir.path();
    // unbound's run folder is an emptyDir in the pod; here a temporary one.
    let profile = Profile {
        unbound_dir: root.to_path_buf(),
        ..Profile::kubernetes()
    };
    let rendered = deploy::render(&profile, &deploy::filter_config()?)?;

    let unbound_conf = root.join("unbound.conf");
    write(&unbound_conf, &rendered.unbound_conf)?;
    let checkconf = tools::find(Tool::Unbound)?.with_file_name("unbound-checkconf");
    let output = Command::new(&checkconf).arg(&unbound_conf).output()?;
    ensure!(
        output.status.success(),
        "unbound-checkconf: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The manifest sets the Elasticsearch URL from the Secret through this variable; the
    // scorer must take it over the file (which has none).
    const ES_VARIABLE: &str = "DOHGUARD_SCORER_ELASTICSEARCH__URL";
    let manifest = std::fs::read_to_string(repo_root().join("deploy/kubernetes/scorer.yaml"))?;
    ensure!(
        manifest.contains(&format!("- name: {ES_VARIABLE}\n")),
        "deploy/kubernetes/scorer.yaml no longer sets {ES_VARIABLE}"
    );
    let scorer_toml = root.join("scorer.toml");
    write(&scorer_toml, &rendered.scorer_toml)?;
    let output = Command::new(scorer::binary()?)
        .arg("--config")
        .arg(&scorer_toml)
        .arg("--print-config")
        .env(ES_VARIABLE, "https://elasticsearch.example.internal:9200")
        .output()?;
    ensure!(
        output.status.success(),
        "dohguard-scorer --print-config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        effective["elasticsearch"]["url"],
        "https://elasticsearch.example.internal:9200"
    );
    assert_eq!(effective["elasticsearch"]["data_stream"], true);
    assert_eq!(effective["listen"], "0.0.0.0:8090");
    assert_eq!(
        effective["model"]["card"],
        "/opt/dohguard/models/dga-cnn/model.card.json"
    );
    assert_eq!(
        effective["model"]["detector_cards"],
        serde_json::json!(["/opt/dohguard/models/tunnel-v1/model.card.json"])
    );
    Ok(())
}
