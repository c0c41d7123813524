//! A secured-Elasticsearch stand-in: real Envoy terminating TLS with a test CA's certificate in
//! front of osmem-server (which has neither TLS nor authentication), checking the
//! `Authorization` header the way a secured Elasticsearch 8 answers: a known credential is
//! proxied; a key without the template privilege gets 403 on `/_index_template`; anything else
//! gets 401 with `WWW-Authenticate`. The test CA (`openssl`, generated per test into a temp
//! folder, never committed) signs a server certificate for `localhost` and `127.0.0.1`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::require_env;

/// A CA and a server certificate it signed.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Self {
        Self::generate_for("DNS:localhost,IP:127.0.0.1")
    }

    /// A CA and a server certificate whose subjectAltName is `san`.
    pub fn generate_for(san: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=dohguard test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self {
            ca_cert: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            dir,
        }
    }
}

/// A credential the front accepts: the exact `Authorization` header value, and whether it may
/// install index templates and write with `_bulk` (403 otherwise, as Elasticsearch answers a
/// key that lacks the privilege).
pub struct FrontKey {
    pub authorization: String,
    pub template_allowed: bool,
    pub bulk_allowed: bool,
}

impl FrontKey {
    /// May do everything.
    pub fn admin(authorization: String) -> Self {
        Self {
            authorization,
            template_allowed: true,
            bulk_allowed: true,
        }
    }

    /// May write documents, not install templates (a least-privilege key).
    pub fn writer(authorization: String) -> Self {
        Self {
            template_allowed: false,
            ..Self::admin(authorization)
        }
    }

    /// May neither write nor install templates (a key missing the write privilege).
    pub fn reader(authorization: String) -> Self {
        Self {
            bulk_allowed: false,
            ..Self::writer(authorization)
        }
    }
}

/// The running Envoy front, killed (by PID) on drop.
pub struct Front {
    child: Option<Child>,
    /// `https://127.0.0.1:PORT` (the certificate names 127.0.0.1).
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    dohguard_launcher::ports::free_port().expect("a free loopback port")
}

fn security_exception(status: u16, reason: &str) -> Value {
    let body = json!({
        "error": {"type": "security_exception", "reason": reason},
        "status": status
    });
    json!({
        "status": status,
        "body": {"inline_string": body.to_string()}
    })
}

/// The Envoy bootstrap (JSON, which Envoy reads like YAML).
fn bootstrap(ca: &TestCa, listen: u16, admin: u16, upstream: u16, keys: &[FrontKey]) -> Value {
    let json_type = json!({"header": {"key": "content-type", "value": "application/json"}});
    let mut routes = Vec::new();
    for key in keys {
        let auth = json!([{"name": "authorization", "string_match": {"exact": key.authorization}}]);
        for (allowed, prefix, action) in [
            (
                key.template_allowed,
                "/_index_template",
                "indices:admin/index_template/put",
            ),
            (key.bulk_allowed, "/_bulk", "indices:data/write/bulk"),
        ] {
            if !allowed {
                routes.push(json!({
                    "match": {"prefix": prefix, "headers": auth},
                    "direct_response": security_exception(403, &format!("action [{action}] is unauthorized for API key")),
                    "response_headers_to_add": [json_type],
                }));
            }
        }
        routes.push(json!({
            "match": {"prefix": "/", "headers": auth},
            "route": {"cluster": "osmem", "timeout": "10s"},
        }));
    }
    routes.push(json!({
        "match": {"prefix": "/"},
        "direct_response": security_exception(401, "unable to authenticate with provided credentials"),
        "response_headers_to_add": [
            json_type,
            {"header": {"key": "www-authenticate", "value": "ApiKey, Basic realm=\"security\""}}
        ],
    }));
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "es_tls",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "common_tls_context": {"tls_certificates": [{
                                "certificate_chain": {"filename": ca.server_cert},
                                "private_key": {"filename": ca.server_key}
                            }]}
                        }
                    },
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "es_front",
                            "codec_type": "AUTO",
                            "route_config": {"virtual_hosts": [{"name": "es", "domains": ["*"], "routes": routes}]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }]
                        }
                    }]
                }]
            }],
            "clusters": [{
                "name": "osmem",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "osmem", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}
                }]}]}
            }]
        }
    })
}

/// True when `GET http://127.0.0.1:port/path` answers 200 (plain HTTP/1.0, no client needed).
fn http_200(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok()
        && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

impl Front {
    /// Starts Envoy on ephemeral ports in front of osmem on `upstream_port`, accepting `keys`,
    /// and waits (polling the admin `/ready`) until it serves.
    pub fn start(ca: &TestCa, upstream_port: u16, keys: &[FrontKey]) -> Self {
        Self::start_on(free_port(), ca, upstream_port, keys)
    }

    /// [`Front::start`] on a given port (a restart with other keys: a key revoked or issued).
    pub fn start_on(listen: u16, ca: &TestCa, upstream_port: u16, keys: &[FrontKey]) -> Self {
        let envoy = require_env("ENVOY_BIN");
        let dir = tempfile::tempdir().unwrap();
        let admin = free_port();
        let config = dir.path().join("front.json");
        std::fs::write(
            &config,
            bootstrap(ca, listen, admin, upstream_port, keys).to_string(),
        )
        .unwrap();
        let log = dir.path().join("envoy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("envoy starts");
        let mut front = Self {
            child: Some(child),
            url: format!("https://127.0.0.1:{listen}"),
            port: listen,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_200(admin, "/ready") {
            let exited = front.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "Envoy front not ready ({exited:?}): {}",
                std::fs::read_to_string(&front.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        front
    }
}

impl Front {
    /// Kills Envoy (by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}
