//! The real scorer for the retraining tests: in process, on a socket, with an admin token,
//! serving the shipped model.

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub struct RealScorer {
    pub url: String,
    _spool: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

pub async fn real_scorer(token_file: &Path) -> RealScorer {
    let spool = tempfile::tempdir().unwrap();
    let mut c = dohguard_scorer::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    c.model.card = repo().join("models/dga-cnn/model.card.json");
    c.model.watch = false;
    c.elasticsearch.url = None;
    c.spool.dir = spool.path().to_owned();
    c.admin.token_file = Some(token_file.to_owned());
    c.validate().unwrap();
    let (app, _tasks) = dohguard_scorer::App::start(c)
        .await
        .expect("the scorer starts (source scripts/env.sh: ORT_DYLIB_PATH)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _tasks = _tasks;
        axum::serve(listener, dohguard_scorer::router(app))
            .await
            .unwrap();
    });
    RealScorer {
        url: format!("http://{addr}"),
        _spool: spool,
        _server: server,
    }
}
