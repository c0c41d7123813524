//! Renders the repository's configuration templates (`envoy/*.j2`, `bench/*.j2`) with minijinja. Undefined variables are errors
//! (strict mode), so a template and its caller cannot silently drift apart.

use minijinja::{Environment, UndefinedBehavior};

use crate::paths;
use crate::LaunchError;

/// Renders `template`, a path relative to the repository root.
pub fn render(template: &'static str, context: serde_json::Value) -> Result<String, LaunchError> {
    let path = paths::repo_root().join(template);
    let source = std::fs::read_to_string(&path)
        .map_err(LaunchError::io(format!("reading {}", path.display())))?;
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let fail = |source| LaunchError::Template { template, source };
    env.add_template(template, &source).map_err(fail)?;
    env.get_template(template)
        .and_then(|t| t.render(context))
        .map_err(fail)
}
