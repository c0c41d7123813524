//! DNS wire-format helpers for tests and benchmarks (hickory-proto): build a query message,
//! encode it for DoH GET (`?dns=`, base64url without padding), and decode answers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

pub use hickory_proto::op::ResponseCode;
pub use hickory_proto::ProtoError;

/// A recursion-desired query for `name`/`rtype`, with an EDNS OPT record when `edns`.
pub fn query(name: &str, rtype: RecordType, id: u16, edns: bool) -> Result<Vec<u8>, ProtoError> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message.to_vec()
}

/// The `dns` parameter of a DoH GET (RFC 8484 section 4.1: base64url, no padding).
pub fn get_param(message: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(message)
}

pub fn parse(bytes: &[u8]) -> Result<Message, ProtoError> {
    Message::from_bytes(bytes)
}

pub use hickory_proto::rr::RecordType as Type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_and_encodes_without_padding() {
        let bytes = query("www.example.test", RecordType::AAAA, 4242, true).unwrap();
        let message = parse(&bytes).unwrap();
        assert_eq!(message.id(), 4242);
        assert_eq!(message.queries()[0].query_type(), RecordType::AAAA);
        assert!(message.extensions().is_some());
        let param = get_param(&bytes);
        assert!(!param.contains('=') && !param.contains('+') && !param.contains('/'));
    }
}
