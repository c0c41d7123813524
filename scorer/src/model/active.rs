//! The active model file (`model.active_card_file`): what makes a promotion survive a
//! restart. A reload to another card (`POST /admin/reload {"card_path"}`, the console's
//! promote and roll back) writes that card's absolute path into the file (one line, written
//! to a temporary file and renamed over it, so a crash leaves the old or the new path, never
//! half of one). At start the scorer serves the card the file names instead of `model.card`;
//! when that card cannot be loaded (removed, changed, unreadable) it says so loudly and
//! serves `model.card`, so a lost candidate folder never stops the gateway.

use std::path::{Path, PathBuf};

/// The card path `file` names; `Ok(None)` when the file does not exist or is empty.
pub fn read(file: &Path) -> std::io::Result<Option<PathBuf>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text.trim())
            .filter(|t| !t.is_empty())
            .map(PathBuf::from)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records `card` as the active card in `file` (atomically: temporary file, then rename).
pub fn write(file: &Path, card: &Path) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", card.display()))?;
    std::fs::rename(&tmp, file)
}

/// The card a start would try first: the one `file` names, else `configured`.
pub fn card_at_start(file: Option<&Path>, configured: &Path) -> PathBuf {
    file.and_then(|f| read(f).ok().flatten())
        .unwrap_or_else(|| configured.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_path_reads_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/active-model");
        assert_eq!(read(&file).unwrap(), None);
        write(&file, Path::new("/models/c1/model.card.json")).unwrap();
        assert_eq!(
            read(&file).unwrap(),
            Some(PathBuf::from("/models/c1/model.card.json"))
        );
        write(&file, Path::new("/models/c2/model.card.json")).unwrap();
        assert_eq!(
            read(&file).unwrap(),
            Some(PathBuf::from("/models/c2/model.card.json"))
        );
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(read(&file).unwrap(), None);
    }
}
