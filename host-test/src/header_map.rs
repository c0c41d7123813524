//! Header maps and their proxy-wasm wire format.
//!
//! Wire format (shared by `proxy_get_header_map_pairs`, `proxy_http_call`
//! and `proxy_send_local_response`): a little-endian `u32` pair count, then a
//! `u32` key length and a `u32` value length per pair, then every key and
//! value followed by a NUL byte.

/// An ordered multimap of header names to values; names compare ASCII
/// case-insensitively, as HTTP/2 header names are lower case in Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    pairs: Vec<(String, String)>,
}

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        Self {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
        }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of `name`; several values are joined with `,` as Envoy does.
    pub fn get(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    pub fn add(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_owned(), value.to_owned()));
    }

    /// Replaces every value of `name` with one value (adds it when absent).
    pub fn replace(&mut self, name: &str, value: &str) {
        match self
            .pairs
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(first) => {
                self.pairs[first].1 = value.to_owned();
                let mut index = 0;
                self.pairs.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || !k.eq_ignore_ascii_case(name)
                });
            }
            None => self.add(name, value),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// Serialises the map in the proxy-wasm wire format.
    pub fn encode(&self) -> Vec<u8> {
        let size = 4 + self
            .pairs
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len() + 2)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(self.pairs.len() as u32).to_le_bytes());
        for (k, v) in &self.pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in &self.pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }

    /// Parses the wire format; `None` when the bytes are truncated, lengths
    /// overrun, a NUL terminator is missing or a name/value is not UTF-8.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() {
            return Some(Self::new()); // the SDK sends nothing for an empty map
        }
        let read_u32 = |at: usize| -> Option<usize> {
            let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_le_bytes(raw) as usize)
        };
        let count = read_u32(0)?;
        let mut lengths = Vec::with_capacity(count.min(1024));
        for i in 0..count {
            lengths.push((read_u32(4 + i * 8)?, read_u32(8 + i * 8)?));
        }
        let mut at = 4 + count * 8;
        let mut take = |len: usize| -> Option<String> {
            let text = bytes.get(at..at + len)?;
            if *bytes.get(at + len)? != 0 {
                return None;
            }
            at += len + 1;
            String::from_utf8(text.to_vec()).ok()
        };
        let mut pairs = Vec::with_capacity(lengths.len());
        for (key_len, value_len) in lengths {
            let key = take(key_len)?;
            let value = take(value_len)?;
            pairs.push((key, value));
        }
        Some(Self { pairs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips() {
        let map = HeaderMap::from_pairs(&[(":method", "GET"), ("x-a", ""), ("x-b", "2")]);
        let bytes = map.encode();
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(HeaderMap::decode(&bytes), Some(map));
    }

    #[test]
    fn truncated_wire_format_is_rejected() {
        let bytes = HeaderMap::from_pairs(&[("key", "value")]).encode();
        for cut in 1..bytes.len() {
            assert_eq!(HeaderMap::decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Guest-supplied bytes never panic the decoder.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = HeaderMap::decode(&bytes);
        }

        #[test]
        fn any_map_round_trips(pairs in proptest::collection::vec(("[a-z:-]{0,12}", "[ -~]{0,24}"), 0..8)) {
            let map = HeaderMap::from_pairs(&pairs);
            proptest::prop_assert_eq!(HeaderMap::decode(&map.encode()), Some(map));
        }
    }

    #[test]
    fn replace_keeps_one_value_and_get_joins() {
        let mut map = HeaderMap::from_pairs(&[("a", "1"), ("B", "2"), ("a", "3")]);
        assert_eq!(map.get("A").as_deref(), Some("1,3"));
        map.replace("a", "9");
        assert_eq!(
            map.pairs(),
            &[("a".into(), "9".into()), ("B".into(), "2".into())]
        );
        map.remove("b");
        assert_eq!(map.len(), 1);
        map.replace("c", "new");
        assert_eq!(map.get("c").as_deref(), Some("new"));
    }
}
