//! Extra detector cards (card v2): a `features` card loads beside the main model, its verdicts
//! carry `detector: tunnel` and `scope: name`, the tunnel session rule blocks the registered
//! domain, v1 cards still load as `dga`, and cards with an unknown feature set or width are
//! refused. The tunnel model here is the hand-weighted test model
//! (tests/fixtures/test-tunnel-model: subdomains of 51+ octets block), so no verdict moves when
//! models/tunnel-v1 is retrained.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use dohguard_core::contract::{Detector, Reason, Scope, ScoreRequest, Verdict};
use dohguard_scorer::model::{card::InputKind, LoadError, ModelCard, ModelError};
use dohguard_scorer::Config;

fn tunnel_card() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-tunnel-model/model.card.json")
}

fn request(name: &str) -> ScoreRequest {
    ScoreRequest {
        name: name.into(),
        qtype: "TXT".into(),
        client: None,
        caller_records: false,
    }
}

async fn scorer_with(
    edit: impl FnOnce(&mut Config),
) -> (std::sync::Arc<dohguard_scorer::App>, tempfile::TempDir) {
    let spool = tempfile::tempdir().unwrap();
    let mut config = test_config(None, spool.path());
    config.model.detector_cards = vec![tunnel_card()];
    edit(&mut config);
    config.validate().unwrap();
    let (app, _tasks) = start(config).await;
    (app, spool)
}

/// A 52-octet subdomain (over the test tunnel model's block threshold) under `base`.
fn tunnel_name(i: usize, base: &str) -> String {
    format!("{i:04}mrqxiyjaon2gk43uebsxq2lmmfzw4zlsf.zz2gk3dfnzswc3dpn.{base}")
}

#[test]
fn a_v1_card_loads_as_the_dga_detector_and_a_v2_features_card_as_tunnel() {
    let v1 = ModelCard::load(&test_model_card()).unwrap();
    assert_eq!(v1.detector, Detector::Dga);
    assert_eq!(v1.input.kind, InputKind::Ids);
    let shipped = ModelCard::load(&default_card()).unwrap();
    assert_eq!(
        shipped.detector,
        Detector::Dga,
        "the shipped v1 card still loads"
    );
    let v2 = ModelCard::load(&tunnel_card()).unwrap();
    assert_eq!(v2.detector, Detector::Tunnel);
    assert_eq!(v2.input.kind, InputKind::Features);
    assert_eq!(v2.input.row_width(), 15);
    let shipped_tunnel = repo_root().join("models/tunnel-v1/model.card.json");
    let t = ModelCard::load(&shipped_tunnel).unwrap();
    assert_eq!(
        (t.detector, t.input.kind),
        (Detector::Tunnel, InputKind::Features)
    );
}

#[test]
fn a_features_card_with_an_unknown_set_or_width_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(tunnel_card()).unwrap();
    for (edit, want) in [
        (
            r#""feature_set": "tunnel-v1""#,
            r#""feature_set": "tunnel-v9""#,
        ),
        (r#""width": 15"#, r#""width": 14"#),
        (
            r#""dtype": "float32",
    "text""#,
            r#""dtype": "int64",
    "text""#,
        ),
    ] {
        assert!(text.contains(edit), "{edit}");
        let path = dir.path().join("model.card.json");
        std::fs::write(&path, text.replace(edit, want)).unwrap();
        let err = ModelCard::load(&path).unwrap_err();
        assert!(
            matches!(err, ModelError::Load(LoadError::Card { .. })),
            "{want}: {err}"
        );
    }
}

#[tokio::test]
async fn tunnel_names_are_judged_by_the_tunnel_detector_at_name_scope() {
    let (app, _spool) = scorer_with(|_| {}).await;
    let scorer = &app.scorer;
    assert_eq!(scorer.detectors().len(), 1);
    let plain = scorer
        .score(vec![request("www.wikipedia.org")])
        .await
        .unwrap();
    assert_eq!(plain[0].verdict, Verdict::Allow);
    assert_eq!(plain[0].detector, Some(Detector::Dga));
    assert_eq!(plain[0].scope, Scope::RegisteredDomain);

    let name = tunnel_name(1, "wikipedia.org");
    let r = scorer.score(vec![request(&name)]).await.unwrap().remove(0);
    assert_eq!(r.verdict, Verdict::Block, "{r:?}");
    assert_eq!(r.reason, Reason::Model);
    assert_eq!(r.detector, Some(Detector::Tunnel));
    assert_eq!(r.scope, Scope::Name, "one flagged name blocks only itself");
    assert!(
        r.model_version
            .starts_with("dohguard-scorer-test-tunnel-model"),
        "{r:?}"
    );

    // A suspect name the tunnel model allows: the registered domain's allow must not cover
    // other suspect names, so it is scoped to the name.
    let short = "k3j9x2m4q8w1z7.wikipedia.org";
    assert!(dohguard_core::features::tunnel::suspect(short));
    let r = scorer.score(vec![request(short)]).await.unwrap().remove(0);
    assert_eq!(r.verdict, Verdict::Allow);
    assert_eq!(r.scope, Scope::Name);
}

#[tokio::test]
async fn flagged_names_under_one_domain_block_the_domain() {
    let (app, _spool) = scorer_with(|c| c.tunnel.domain_block_names = 3).await;
    let scorer = &app.scorer;
    for i in 0..2 {
        let r = scorer
            .score(vec![request(&tunnel_name(i, "wikipedia.org"))])
            .await
            .unwrap();
        assert_eq!(r[0].scope, Scope::Name, "flag {i}");
    }
    let third = scorer
        .score(vec![request(&tunnel_name(2, "wikipedia.org"))])
        .await
        .unwrap();
    assert_eq!(
        (third[0].verdict, third[0].scope, third[0].detector),
        (
            Verdict::Block,
            Scope::RegisteredDomain,
            Some(Detector::Tunnel)
        )
    );
    // Every name under the domain now, plain ones included; other domains are untouched.
    let www = scorer
        .score(vec![request("www.wikipedia.org")])
        .await
        .unwrap();
    assert_eq!(
        (www[0].verdict, www[0].scope, www[0].detector),
        (
            Verdict::Block,
            Scope::RegisteredDomain,
            Some(Detector::Tunnel)
        )
    );
    let other = scorer.score(vec![request("www.google.com")]).await.unwrap();
    assert_eq!(other[0].verdict, Verdict::Allow);
}

#[tokio::test]
async fn the_session_rule_can_be_turned_off() {
    let (app, _spool) = scorer_with(|c| c.tunnel.domain_block_names = 0).await;
    for i in 0..5 {
        let r = app
            .scorer
            .score(vec![request(&tunnel_name(i, "wikipedia.org"))])
            .await
            .unwrap();
        assert_eq!((r[0].verdict, r[0].scope), (Verdict::Block, Scope::Name));
    }
    let www = app
        .scorer
        .score(vec![request("www.wikipedia.org")])
        .await
        .unwrap();
    assert_eq!(www[0].verdict, Verdict::Allow);
}

#[tokio::test]
async fn a_missing_detector_card_stops_start_up_naming_it() {
    let spool = tempfile::tempdir().unwrap();
    let mut config = test_config(None, spool.path());
    config.model.detector_cards = vec![PathBuf::from("/nonexistent/tunnel/model.card.json")];
    let err = dohguard_scorer::App::start(config).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/tunnel/model.card.json"),
        "{err}"
    );
}
