//! Runs the real `kdig` (Knot DNS) against the gateway over DoH and parses its text output
//! (kdig 3.2 has no JSON output): status, flags, answer records and Extended DNS Errors.

use std::path::Path;
use std::process::Command;

use crate::tools::{self, Tool};
use crate::LaunchError;

/// DoH method kdig uses: `+https` sends POST, `+https-get` sends GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One record line of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

#[derive(Debug, Clone)]
pub struct KdigReply {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub status: String,
    pub flags: Vec<String>,
    pub answers: Vec<Record>,
    /// Extended DNS Error info codes (RFC 8914).
    pub ede: Vec<u16>,
    /// The whole output, for assertion messages.
    pub raw: String,
}

impl KdigReply {
    pub fn answer_data(&self, rtype: &str) -> Vec<&str> {
        self.answers
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.as_str())
            .collect()
    }
}

/// Queries `name`/`rtype` over DoH on the TLS listener at 127.0.0.1:`port`, trusting `ca`
/// for host name `tls_hostname`. `edns` adds an OPT record (kdig sends one unless `+noedns`).
pub fn query_doh(
    port: u16,
    ca: &Path,
    tls_hostname: &str,
    method: Method,
    name: &str,
    rtype: &str,
    edns: bool,
) -> Result<KdigReply, LaunchError> {
    let mut command = Command::new(tools::find(Tool::Kdig)?);
    command
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .arg(match method {
            Method::Get => "+https-get=/dns-query",
            Method::Post => "+https=/dns-query",
        })
        .arg(format!("+tls-ca={}", ca.display()))
        .arg(format!("+tls-hostname={tls_hostname}"))
        .args(["+timeout=5", "+retry=0"])
        .arg(if edns { "+edns" } else { "+noedns" })
        .args([name, rtype]);
    let output = command.output().map_err(LaunchError::io("running kdig"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(LaunchError::ToolFailed {
            tool: "kdig",
            status: output.status.to_string(),
            output: format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    parse(&text).ok_or_else(|| LaunchError::ToolFailed {
        tool: "kdig",
        status: "unparsable output".to_owned(),
        output: text,
    })
}

/// Parses kdig's default text output; `None` when it has no header line (no reply).
pub fn parse(text: &str) -> Option<KdigReply> {
    let mut status = None;
    let mut flags = Vec::new();
    let mut answers = Vec::new();
    let mut ede = Vec::new();
    let mut in_answer = false;
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            status = Some(rest.split(';').next()?.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix(";; Flags: ") {
            flags = rest
                .split(';')
                .next()?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else if let Some(rest) = line.strip_prefix(";; EDE: ") {
            if let Some(code) = rest.split_whitespace().next().and_then(|c| c.parse().ok()) {
                ede.push(code);
            }
        } else if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
        } else if line.starts_with(";;") || line.trim().is_empty() {
            in_answer = false;
        } else if in_answer {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, ttl, _class, rtype, data @ ..] = fields.as_slice() {
                answers.push(Record {
                    name: (*name).to_owned(),
                    ttl: ttl.parse().unwrap_or(0),
                    rtype: (*rtype).to_owned(),
                    data: data.join(" "),
                });
            }
        }
    }
    Some(KdigReply {
        status: status?,
        flags,
        answers,
        ede,
        raw: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = ";; ->>HEADER<<- opcode: QUERY; status: NXDOMAIN; id: 7\n\
;; Flags: qr rd ra; QUERY: 1; ANSWER: 1; AUTHORITY: 0; ADDITIONAL: 1\n\
\n\
;; EDNS PSEUDOSECTION:\n\
;; Version: 0; flags: ; UDP size: 1232 B; ext-rcode: NOERROR\n\
;; EDE: 15 (Blocked): 'dohguard'\n\
\n\
;; QUESTION SECTION:\n\
;; a.test.                     \tIN\tA\n\
\n\
;; ANSWER SECTION:\n\
a.test.                 \t300\tIN\tA\t192.0.2.1\n\
\n\
;; Received 50 B\n";

    #[test]
    fn parses_status_flags_answers_and_ede() {
        let reply = parse(SAMPLE).unwrap();
        assert_eq!(reply.status, "NXDOMAIN");
        assert_eq!(reply.flags, ["qr", "rd", "ra"]);
        assert_eq!(reply.answer_data("A"), ["192.0.2.1"]);
        assert_eq!(reply.answers[0].ttl, 300);
        assert_eq!(reply.ede, [15]);
    }

    #[test]
    fn output_without_a_header_is_no_reply() {
        assert!(parse(";; WARNING: connection timeout\n").is_none());
    }
}
