//! One child process owned by the launcher: output goes to a log file in the stack's
//! directory, readiness is awaited by polling a probe, and the process is stopped by PID
//! (SIGTERM, then SIGKILL after a grace period) when the handle drops.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::LaunchError;

const POLL_INTERVAL: Duration = Duration::from_millis(20);
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `command` with stdin closed and stdout + stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self, LaunchError> {
        let out =
            File::create(log).map_err(LaunchError::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(LaunchError::io("duplicating a log handle"))?;
        // Own process group: a terminal's Ctrl-C reaches the launcher, which stops the
        // children in order, instead of every child at once.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(LaunchError::io(format!("starting {name} ({command:?})")))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Errors if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), LaunchError> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.exited("stopped".to_owned()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(format!("wait failed: {e}"))),
        }
    }

    fn exited(&self, status: String) -> LaunchError {
        LaunchError::Exited {
            what: self.name.clone(),
            status,
            log: self.log.clone(),
            tail: self.log_tail(30),
        }
    }

    /// Polls `probe` until it returns true, failing early if the process exits and after
    /// `timeout` if it never gets ready.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if probe() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::NotReady {
                    what: self.name.clone(),
                    secs: timeout.as_secs(),
                    log: self.log.clone(),
                    tail: self.log_tail(30),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it is still there after a grace period.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of the log at `path`, led by up to five earlier lines that report
/// an error (`critical`, `error`, `fatal`, `panicked`): a long start-up banner (Envoy lists
/// every extension) must not push the reason out of a truncated report.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let errors: Vec<&str> = all[..start]
        .iter()
        .copied()
        .filter(|line| reports_error(line))
        .take(5)
        .collect();
    let tail = all[start..].join("\n");
    if errors.is_empty() {
        tail
    } else {
        format!("(error lines) {}\n(last lines)\n{tail}", errors.join("\n"))
    }
}

fn reports_error(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["critical", "[error]", " error ", "fatal", "panicked"]
        .iter()
        .any(|word| lower.contains(word))
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// True once GET `url` answers 200.
pub fn http_ok(url: &str) -> bool {
    matches!(
        crate::http::agent().get(url).call(),
        Ok(response) if response.status() == 200
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_leads_with_earlier_error_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text =
            String::from("[critical][main] cannot bind 127.0.0.1:1: Address already in use\n");
        for i in 0..40 {
            text.push_str(&format!("[info] banner {i}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path, 3);
        assert!(
            tail.starts_with("(error lines) [critical][main] cannot bind"),
            "{tail}"
        );
        assert!(
            tail.ends_with("banner 37\n[info] banner 38\n[info] banner 39"),
            "{tail}"
        );
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "b\nc");
    }
}
