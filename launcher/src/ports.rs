//! Ports for the processes the stack starts, when a test or `up` does not fix them.
//!
//! A port is chosen here, then bound by the child a few milliseconds later. Asking the kernel
//! for port 0 would hand out a number from the ephemeral range (32768-60999 on Linux), the
//! same range every outgoing connection takes its source port from; with several stacks
//! running at once, a child then lost that race now and then (`Address already in use`).
//! So the number is drawn at random from below that range and checked by binding it for TCP
//! and UDP (unbound listens on both). Envoy needs none of this: it binds port 0 itself and
//! reports what it got (`envoy::EnvoyPorts::KERNEL_PICKED`).

use std::net::{TcpListener, UdpSocket};
use std::ops::Range;

use crate::LaunchError;

/// Below the kernel's ephemeral range and above the well-known services.
const CANDIDATES: Range<u16> = 20_000..32_000;
const ATTEMPTS: usize = 200;

pub fn free_port() -> Result<u16, LaunchError> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let port = random_in(CANDIDATES)?;
        match bindable(port) {
            Ok(()) => return Ok(port),
            Err(e) => last_error = Some(e),
        }
    }
    Err(LaunchError::Io {
        context: format!(
            "finding a free loopback port in {}..{} after {ATTEMPTS} tries",
            CANDIDATES.start, CANDIDATES.end
        ),
        source: last_error.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    })
}

fn bindable(port: u16) -> std::io::Result<()> {
    let tcp = TcpListener::bind(("127.0.0.1", port))?;
    let udp = UdpSocket::bind(("127.0.0.1", port))?;
    drop((tcp, udp));
    Ok(())
}

fn random_in(range: Range<u16>) -> Result<u16, LaunchError> {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).map_err(|e| LaunchError::Io {
        context: "drawing a random port".to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let span = range.end - range.start;
    Ok(range.start + u16::from_le_bytes(bytes) % span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        for _ in 0..20 {
            let port = free_port().expect("a free port");
            assert!(CANDIDATES.contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
