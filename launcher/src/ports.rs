//! Ephemeral ports for the processes the stack starts. The kernel picks a free port for a
//! socket bound to port 0; the socket is closed and the number handed to the child, which
//! binds it a few milliseconds later (a tiny race, acceptable on a test machine).

use std::net::TcpListener;

use crate::LaunchError;

pub fn free_port() -> Result<u16, LaunchError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(LaunchError::io("binding an ephemeral port"))?;
    let port = listener
        .local_addr()
        .map_err(LaunchError::io("reading an ephemeral port"))?
        .port();
    Ok(port)
}
