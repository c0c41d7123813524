//! The model card file (`model.card.json`) as the serving parts use it: read, parsed and
//! validated by the part's own card type; the ONNX file named by the card, next to it, read
//! and checked against the card's sha256 before a session is built from those same bytes.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::Error;

/// Reads the card at `path`, parses it as `C` and runs `validate` on it; a problem is an
/// [`Error::Card`] naming the file.
pub fn read<C: DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&C) -> Result<(), String>,
) -> Result<C, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_owned(),
        error,
    })?;
    let card: C = serde_json::from_str(&text).map_err(|e| Error::Card {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    validate(&card).map_err(|problem| Error::Card {
        path: path.to_owned(),
        problem,
    })?;
    Ok(card)
}

/// `<name>-<version>`, the `model_version` of replies, metrics and documents.
pub fn model_version(name: &str, version: &str) -> String {
    format!("{name}-{version}")
}

/// The ONNX file `onnx_file`, resolved against the folder of the card at `card_path`.
pub fn onnx_path(card_path: &Path, onnx_file: &str) -> PathBuf {
    card_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(onnx_file)
}

/// The checks of the card fields this module relies on: `sha256` is 64 lower-case hex
/// digits and `onnx_file` is not empty.
pub fn validate_file_fields(onnx_file: &str, sha256: &str) -> Result<(), String> {
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("sha256 must be 64 lower-case hex digits".into());
    }
    if onnx_file.is_empty() {
        return Err("onnx_file is empty".into());
    }
    Ok(())
}

/// The bytes of the ONNX file at `onnx_path`, once their sha256 is `sha256` (the card's).
pub fn read_verified(onnx_path: PathBuf, sha256: &str) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(&onnx_path).map_err(|error| Error::Io {
        path: onnx_path.clone(),
        error,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(Error::Checksum {
            path: onnx_path,
            expected: sha256.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Card {
        onnx_file: String,
        sha256: String,
    }

    fn sha_of(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_card_and_its_verified_onnx_file() {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("model.card.json");
        std::fs::write(dir.path().join("m.onnx"), b"model bytes").unwrap();
        let sha = sha_of(b"model bytes");
        std::fs::write(
            &card_path,
            format!(r#"{{"onnx_file": "m.onnx", "sha256": "{sha}"}}"#),
        )
        .unwrap();
        let card: Card = read(&card_path, |c: &Card| {
            validate_file_fields(&c.onnx_file, &c.sha256)
        })
        .unwrap();
        let onnx = onnx_path(&card_path, &card.onnx_file);
        assert_eq!(onnx, dir.path().join("m.onnx"));
        assert_eq!(
            read_verified(onnx.clone(), &card.sha256).unwrap(),
            b"model bytes"
        );

        std::fs::write(&onnx, b"other bytes").unwrap();
        let err = read_verified(onnx.clone(), &card.sha256).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: sha256 is {}, the model card says {sha}",
                onnx.display(),
                sha_of(b"other bytes")
            )
        );
        assert_eq!(model_version("dga-cnn", "1"), "dga-cnn-1");
        assert_eq!(
            onnx_path(Path::new("card.json"), "m.onnx"),
            Path::new("m.onnx")
        );
    }

    #[test]
    fn bad_cards_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("model.card.json");
        let err = read::<Card>(&card_path, |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        std::fs::write(&card_path, r#"{"onnx_file": "m.onnx", "sha256": "x"}"#).unwrap();
        let err = read(&card_path, |c: &Card| {
            validate_file_fields(&c.onnx_file, &c.sha256)
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model card {}: sha256 must be 64 lower-case hex digits",
                card_path.display()
            )
        );
        std::fs::write(&card_path, "{").unwrap();
        let err = read::<Card>(&card_path, |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Card { .. }), "{err}");
        assert_eq!(
            validate_file_fields("", &"a".repeat(64)).unwrap_err(),
            "onnx_file is empty"
        );
    }
}
