//! The `kv.v1` messages `spiral/roadrunner-kv` sends and reads (field numbers as rr's
//! `proto/kv/v1/kv.proto`).

/// `kv.v1.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The storage's name.
    #[prost(string, tag = "1")]
    pub storage: String,
    /// The keys (and values, expiry times) the call is about.
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<Item>,
}

/// `kv.v1.Item`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value, opaque bytes (PHP's serialization).
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// Absolute expiry time, RFC 3339; empty for none.
    #[prost(string, tag = "3")]
    pub timeout: String,
}

/// `kv.v1.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// The items the call answers with.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<Item>,
}
