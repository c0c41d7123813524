//! Proxy-wasm shared data: a key/value store with compare-and-swap, shared by
//! every VM that holds a clone of the same [`SharedData`] handle (as Envoy
//! shares it between the VM copies of its worker threads).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Why a shared-data write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The caller's CAS value no longer matches the entry's.
    CasMismatch,
}

#[derive(Debug, Default)]
struct Entries {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
}

/// A cloneable handle on one shared-data store.
#[derive(Debug, Clone, Default)]
pub struct SharedData {
    inner: Arc<Mutex<Entries>>,
}

impl SharedData {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A poisoned lock only means another test thread panicked; the map is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and its CAS token.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().values.get(key).cloned()
    }

    /// Stores `value`. `cas == 0` writes unconditionally; otherwise the write
    /// only happens while the entry still carries that CAS token (Envoy's rule:
    /// a CAS against a missing key succeeds).
    pub fn set(&self, key: &str, value: Vec<u8>, cas: u32) -> Result<(), SetError> {
        let mut entries = self.lock();
        if let Some((_, current)) = entries.values.get(key) {
            if cas != 0 && cas != *current {
                return Err(SetError::CasMismatch);
            }
        }
        entries.last_cas = entries.last_cas.wrapping_add(1).max(1);
        let token = entries.last_cas;
        entries.values.insert(key.to_owned(), (value, token));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().values.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Total bytes of keys and values held (for memory figures).
    pub fn byte_size(&self) -> usize {
        self.lock()
            .values
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_concurrent_writers() {
        let data = SharedData::new();
        data.set("k", b"one".to_vec(), 0).unwrap();
        let (_, cas) = data.get("k").unwrap();
        let other_vm = data.clone();
        other_vm.set("k", b"two".to_vec(), cas).unwrap();
        assert_eq!(
            data.set("k", b"three".to_vec(), cas),
            Err(SetError::CasMismatch)
        );
        assert_eq!(data.get("k").unwrap().0, b"two");
        data.set("k", b"four".to_vec(), 0).unwrap();
        assert_eq!(other_vm.get("k").unwrap().0, b"four");
    }
}
