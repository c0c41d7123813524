//! The benchmark peer: Debian's `dnsdist` serving DoH over TLS with an exact-name deny list and
//! the same unbound as its backend (health-checked with a name unbound answers).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{tcp_open, ManagedProcess};
use crate::tls::TlsFiles;
use crate::tools::{self, Tool};
use crate::LaunchError;

#[derive(Debug)]
pub struct Dnsdist {
    process: ManagedProcess,
    pub doh_port: u16,
}

impl Dnsdist {
    /// Starts dnsdist with the names in `deny_list_file` (one per line) blocked, forwarding the
    /// rest to unbound's classic DNS port `upstream_port`.
    pub fn start(
        dir: &Path,
        tls: &TlsFiles,
        upstream_port: u16,
        check_name: &str,
        deny_list_file: &Path,
    ) -> Result<Self, LaunchError> {
        let doh_port = free_port()?;
        let config = crate::template::render(
            "bench/dnsdist.conf.j2",
            serde_json::json!({
                "dns_port": free_port()?,
                "doh_port": doh_port,
                "cert": tls.cert,
                "key": tls.key,
                "upstream_port": upstream_port,
                "check_name": check_name,
                "deny_list_file": deny_list_file,
                // unbound answers only the gateway's source address.
                "source": crate::unbound::GATEWAY_SOURCE,
            }),
        )?;
        let config_path = dir.join("dnsdist.conf");
        std::fs::write(&config_path, config).map_err(LaunchError::io(format!(
            "writing {}",
            config_path.display()
        )))?;
        let mut command = Command::new(tools::find(Tool::Dnsdist)?);
        command
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(&config_path);
        let mut process = ManagedProcess::spawn("dnsdist", command, &dir.join("dnsdist.log"))?;
        process.wait_ready(Duration::from_secs(30), || tcp_open(doh_port))?;
        Ok(Self { process, doh_port })
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}
