//! The gateway stack with the console beside it, as `cargo xtask up` wires them: the filter
//! asks the real scorer and sends its events to the store, the console reads the store. What
//! the console's end-to-end tests start, with a session of the initial admin and the headless
//! browser scripts of `console/web/e2e`.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::console::{Console, ConsoleOptions, INITIAL_ADMIN};
use crate::filter_config::FilterConfig;
use crate::osmem::Osmem;
use crate::overrides::OverrideFeed;
use crate::paths::repo_root;
use crate::scorer::Scorer;
use crate::wait::wait_for;
use crate::{LaunchError, Stack, StackOptions};

#[derive(Debug, Clone, Default)]
pub struct ConsoleStackOptions {
    /// The filter's deny list (the filter also asks the scorer and sends events:
    /// [`StackOptions::real_scorer`]).
    pub deny: Vec<String>,
    /// Envoy's workers.
    pub concurrency: u32,
    /// The console as the filter's override source ([`Console::start_feeding`]).
    pub override_feed: Option<OverrideFeed>,
    /// Give the console the scorer's URL (the thresholds shown with a verdict).
    pub console_asks_scorer: bool,
    /// Give the console the scorer's admin token (it may then promote and roll back models).
    pub console_admin_of_scorer: bool,
}

/// The stack (real scorer, store) and the console; dropping it stops the console, then the
/// stack.
#[derive(Debug)]
pub struct ConsoleStack {
    pub console: Console,
    console_options: ConsoleOptions,
    override_feed: Option<OverrideFeed>,
    console_dir: tempfile::TempDir,
    pub stack: Stack,
}

impl ConsoleStack {
    pub fn start(options: ConsoleStackOptions) -> Result<Self, LaunchError> {
        let filter = FilterConfig {
            deny: options.deny,
            ..FilterConfig::default()
        };
        let stack = Stack::start(StackOptions {
            override_feed: options.override_feed.clone(),
            ..StackOptions::real_scorer(filter, options.concurrency)?
        })?;
        let scorer = stack.scorer.as_ref().expect("the real scorer");
        let console_options = ConsoleOptions {
            elasticsearch_url: store_of(&stack).url(),
            scorer_url: options.console_asks_scorer.then(|| scorer.url()),
            port: None,
            password_file: None,
            scorer_admin_token_file: options
                .console_admin_of_scorer
                .then(|| scorer.admin_token_file.clone()),
        };
        let console_dir = tempfile::tempdir().map_err(LaunchError::io("a console folder"))?;
        let console = start_console(
            console_dir.path(),
            &console_options,
            options.override_feed.as_ref(),
        )?;
        Ok(Self {
            console,
            console_options,
            override_feed: options.override_feed,
            console_dir,
            stack,
        })
    }

    /// The store the filter's events and the scorer's verdicts go to.
    pub fn store(&self) -> &Osmem {
        store_of(&self.stack)
    }

    pub fn scorer(&self) -> &Scorer {
        self.stack.scorer.as_ref().expect("the real scorer")
    }

    /// Starts the console again (after [`Console::stop`]): same folder, store and options.
    pub fn restart_console(&mut self) -> Result<(), LaunchError> {
        self.console = start_console(
            self.console_dir.path(),
            &self.console_options,
            self.override_feed.as_ref(),
        )?;
        Ok(())
    }

    /// Waits until `count` queries are on the record (events are batched, then bulk-written).
    pub fn wait_for_events(&self, count: usize, timeout: Duration) -> Result<(), LaunchError> {
        let store = self.store();
        wait_for(
            &format!("{count} query events in the store"),
            timeout,
            || {
                let seen = store
                    .search(serde_json::json!({"exists": {"field": "event.id"}}))?
                    .len();
                Ok::<_, LaunchError>((seen >= count).then_some(()))
            },
        )?;
        Ok(())
    }

    /// Logs the initial admin in.
    pub fn admin(&self) -> Result<AdminSession, LaunchError> {
        AdminSession::login(&self.console)
    }

    /// Runs the headless-browser script `console/web/e2e/<script>` against the console as the
    /// initial admin, with `env` added (and `SCREENSHOT_DIR` from `DOHGUARD_SCREENSHOT_DIR`);
    /// returns the JSON it prints.
    pub fn browser(&self, script: &str, env: &[(&str, &str)]) -> Result<Value, LaunchError> {
        let web = repo_root().join("console/web");
        let node = which::which("node").map_err(|_| LaunchError::MissingTool {
            tool: "node",
            looked: "PATH".into(),
        })?;
        let out = Command::new(node)
            .arg(web.join("e2e").join(script))
            .current_dir(&web)
            .env("CONSOLE_URL", self.console.url())
            .env("CONSOLE_USER", INITIAL_ADMIN)
            .env("CONSOLE_PASSWORD", self.console.initial_password()?)
            .envs(env.iter().copied())
            .envs(std::env::var_os("DOHGUARD_SCREENSHOT_DIR").map(|d| ("SCREENSHOT_DIR", d)))
            .output()
            .map_err(LaunchError::io(format!("running node e2e/{script}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let failed = |problem: String| LaunchError::ToolFailed {
            tool: "the browser script",
            status: out.status.to_string(),
            output: format!(
                "{script} {problem}:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        };
        if !out.status.success() {
            return Err(failed("failed".into()));
        }
        serde_json::from_str(stdout.trim()).map_err(|e| failed(format!("printed no JSON ({e})")))
    }
}

fn store_of(stack: &Stack) -> &Osmem {
    stack
        .osmem
        .as_ref()
        .expect("the real scorer comes with the store")
}

fn start_console(
    dir: &Path,
    options: &ConsoleOptions,
    feed: Option<&OverrideFeed>,
) -> Result<Console, LaunchError> {
    match feed {
        Some(feed) => Console::start_feeding(dir, options, feed),
        None => Console::start(dir, options),
    }
}

/// A logged-in session of the console's initial admin: its cookie and CSRF token.
#[derive(Debug)]
pub struct AdminSession {
    agent: ureq::Agent,
    base: String,
    pub cookie: String,
    pub csrf_token: String,
}

impl AdminSession {
    /// `POST api/login` with the generated password; an answer other than 200 is an error.
    pub fn login(console: &Console) -> Result<Self, LaunchError> {
        let agent = crate::http::agent();
        let base = console.url();
        let url = format!("{base}api/login");
        let fail = |message: String| LaunchError::Http {
            url: url.clone(),
            message,
        };
        let mut reply = agent
            .post(&url)
            .send_json(serde_json::json!({"username": INITIAL_ADMIN, "password": console.initial_password()?}))
            .map_err(|e| fail(e.to_string()))?;
        if reply.status() != 200 {
            return Err(fail(format!("answered {}", reply.status())));
        }
        let cookie = reply
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .ok_or_else(|| fail("no session cookie".into()))?
            .to_owned();
        let body = reply
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let me: Value = serde_json::from_str(&body).map_err(|e| fail(format!("{e}: {body}")))?;
        let csrf_token = me["csrf_token"]
            .as_str()
            .ok_or_else(|| fail(format!("no csrf_token in {me}")))?
            .to_owned();
        Ok(Self {
            agent,
            base,
            cookie,
            csrf_token,
        })
    }

    /// GET `path` (relative to the console's URL) with the session; the answer's status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String), LaunchError> {
        let url = format!("{}{path}", self.base);
        let fail = |e: ureq::Error| LaunchError::Http {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut reply = self
            .agent
            .get(&url)
            .header("cookie", &self.cookie)
            .call()
            .map_err(fail)?;
        let status = reply.status().as_u16();
        Ok((status, reply.body_mut().read_to_string().map_err(fail)?))
    }

    /// GET `path` as JSON; an answer other than 200 is an error.
    pub fn get_json(&self, path: &str) -> Result<Value, LaunchError> {
        let (status, body) = self.get(path)?;
        let fail = |message: String| LaunchError::Http {
            url: format!("{}{path}", self.base),
            message,
        };
        if status != 200 {
            return Err(fail(format!("answered {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| fail(format!("{e}: {body}")))
    }

    /// POST `body` to `path` with the session and its CSRF token; the answer's status and JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<(u16, Value), LaunchError> {
        let url = format!("{}{path}", self.base);
        let fail = |message: String| LaunchError::Http {
            url: url.clone(),
            message,
        };
        let mut reply = self
            .agent
            .post(&url)
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf_token)
            .send_json(body)
            .map_err(|e| fail(e.to_string()))?;
        let status = reply.status().as_u16();
        let text = reply
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let value = serde_json::from_str(&text).map_err(|e| fail(format!("{e}: {text}")))?;
        Ok((status, value))
    }
}
