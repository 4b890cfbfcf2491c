//! The centrifuge plugin's pure parts (spec centrifuge): the proxy methods Centrifugo calls
//! and the event type each one hands the PHP worker, the `centrifuge.*` RPC methods that go
//! to Centrifugo's API, and a check that bytes are protobuf wire format (the proxy relays
//! messages without decoding them, but neither a request nor a worker's answer that no
//! protobuf decoder could read goes further).

/// The proxy service Centrifugo calls (`grpc://` proxy endpoints).
pub const PROXY_SERVICE: &str = "centrifugal.centrifugo.proxy.CentrifugoProxy";

/// The API service rr calls for the `centrifuge.*` RPC methods.
pub const API_SERVICE: &str = "centrifugal.centrifugo.api.CentrifugoApi";

/// A unary proxy event: what the worker's context says in `"type"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEvent {
    /// `Connect`.
    Connect,
    /// `Refresh`.
    Refresh,
    /// `Subscribe`.
    Subscribe,
    /// `Publish`.
    Publish,
    /// `RPC`.
    Rpc,
    /// `SubRefresh`.
    SubRefresh,
    /// `NotifyChannelState`.
    NotifyChannelState,
}

/// What a proxy method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMethod {
    /// A unary event for the worker.
    Event(ProxyEvent),
    /// A subscription stream (`SubscribeUnidirectional`, `SubscribeBidirectional`): rr
    /// answers "not supported".
    Stream,
}

impl ProxyMethod {
    /// The method of the proxy service called `name`; None for a name the service lacks.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Connect" => Self::Event(ProxyEvent::Connect),
            "Refresh" => Self::Event(ProxyEvent::Refresh),
            "Subscribe" => Self::Event(ProxyEvent::Subscribe),
            "Publish" => Self::Event(ProxyEvent::Publish),
            "RPC" => Self::Event(ProxyEvent::Rpc),
            "SubRefresh" => Self::Event(ProxyEvent::SubRefresh),
            "NotifyChannelState" => Self::Event(ProxyEvent::NotifyChannelState),
            "SubscribeUnidirectional" | "SubscribeBidirectional" => Self::Stream,
            _ => return None,
        })
    }
}

impl ProxyEvent {
    /// The `"type"` the worker's context carries.
    ///
    /// spec centrifuge [deviation]: sub-refresh is `sub_refresh`, the type
    /// roadrunner-php/centrifugo's `RequestType::SubRefresh` reads (rr's `subrefresh`
    /// reaches no PHP handler).
    #[must_use]
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Refresh => "refresh",
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
            Self::Rpc => "rpc",
            Self::SubRefresh => "sub_refresh",
            Self::NotifyChannelState => "notifychannelstate",
        }
    }
}

/// The `centrifuge.*` RPC methods (rr's `rpc.go`), each forwarded to the API method of the
/// same name.
pub const API_METHODS: [&str; 34] = [
    "Batch",
    "Publish",
    "Broadcast",
    "Subscribe",
    "Unsubscribe",
    "Disconnect",
    "Presence",
    "PresenceStats",
    "History",
    "HistoryRemove",
    "Info",
    "RPC",
    "Refresh",
    "Channels",
    "Connections",
    "UpdateUserStatus",
    "GetUserStatus",
    "DeleteUserStatus",
    "BlockUser",
    "UnblockUser",
    "RevokeToken",
    "InvalidateUserTokens",
    "DeviceRegister",
    "DeviceUpdate",
    "DeviceRemove",
    "DeviceList",
    "DeviceTopicList",
    "DeviceTopicUpdate",
    "UserTopicList",
    "UserTopicUpdate",
    "SendPushNotification",
    "UpdatePushStatus",
    "CancelPush",
    "RateLimit",
];

/// Why bytes are not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A varint past ten bytes or cut short.
    #[error("a varint is malformed or cut short")]
    Varint,
    /// Field number 0, or past 2^29 - 1.
    #[error("a field number is out of range")]
    FieldNumber,
    /// Wire types 3 and 4 (groups, which proto3 messages never hold), 6 and 7.
    #[error("wire type {0} is not allowed")]
    WireType(u8),
    /// A length or fixed-size value runs past the end.
    #[error("a field runs past the end of the message")]
    Truncated,
}

/// The largest field number protobuf allows.
const FIELD_NUMBER_MAX: u64 = (1 << 29) - 1;

/// Checks that `message` is a sequence of well-formed protobuf fields (nested messages are
/// length-delimited bytes at this level, as `bytes` and `string` fields are).
///
/// # Errors
/// The first malformed field.
pub fn check_wire_format(message: &[u8]) -> Result<(), WireError> {
    let mut rest = message;
    while !rest.is_empty() {
        let key = read_varint(&mut rest)?;
        let field = key >> 3;
        if field == 0 || field > FIELD_NUMBER_MAX {
            return Err(WireError::FieldNumber);
        }
        let skip = match key & 7 {
            0 => {
                read_varint(&mut rest)?;
                0
            }
            1 => 8,
            2 => usize::try_from(read_varint(&mut rest)?).map_err(|_| WireError::Truncated)?,
            5 => 4,
            // Fits: a wire type is three bits.
            other => return Err(WireError::WireType(other as u8)),
        };
        if skip > rest.len() {
            return Err(WireError::Truncated);
        }
        rest = &rest[skip..];
    }
    Ok(())
}

/// Reads one varint off the front of `bytes`.
fn read_varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    Err(WireError::Varint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_types() {
        assert_eq!(
            ProxyMethod::from_name("SubRefresh"),
            Some(ProxyMethod::Event(ProxyEvent::SubRefresh))
        );
        assert_eq!(ProxyEvent::SubRefresh.type_name(), "sub_refresh");
        assert_eq!(ProxyEvent::Rpc.type_name(), "rpc");
        assert_eq!(
            ProxyMethod::from_name("SubscribeBidirectional"),
            Some(ProxyMethod::Stream)
        );
        assert_eq!(ProxyMethod::from_name("NotifyCacheEmpty"), None);
        assert_eq!(ProxyMethod::from_name("connect"), None);
        assert!(API_METHODS.contains(&"RateLimit"));
    }

    #[test]
    fn wire_format() {
        // ConnectResponse{result{user:"alice"}}: field 1, bytes [field 1 "alice"].
        let good = [0x0a, 0x07, 0x0a, 0x05, b'a', b'l', b'i', b'c', b'e'];
        assert_eq!(check_wire_format(&good), Ok(()));
        assert_eq!(check_wire_format(&[]), Ok(()));
        // varint, fixed64, fixed32 fields.
        let mixed = [
            0x08, 0x96, 0x01, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0x1d, 1, 2, 3, 4,
        ];
        assert_eq!(check_wire_format(&mixed), Ok(()));
        assert_eq!(
            check_wire_format(b"{\"user\":1}"),
            Err(WireError::WireType(3))
        );
        assert_eq!(
            check_wire_format(&[0x0a, 0x09, 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            check_wire_format(&[0x00, 0x01]),
            Err(WireError::FieldNumber)
        );
        assert_eq!(check_wire_format(&[0x08, 0x80]), Err(WireError::Varint));
        assert_eq!(check_wire_format(&[0x08; 1][..]), Err(WireError::Varint));
    }
}
