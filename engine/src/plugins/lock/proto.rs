//! The `lock.v1beta1` messages `roadrunner-php/lock` sends and reads (field numbers as rr's
//! `proto/lock/v1beta1/lock.proto`).

/// `lock.v1beta1.Request`: every method takes it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The resource's name (empty is allowed, as in rr).
    #[prost(string, tag = "1")]
    pub resource: String,
    /// The lock's owner; `*` in `Exists` is anyone.
    #[prost(string, tag = "2")]
    pub id: String,
    /// Microseconds; 0 or absent: no expiry.
    #[prost(int64, optional, tag = "3")]
    pub ttl: Option<i64>,
    /// Microseconds to wait for the lock; 0 or absent: 1 ms.
    #[prost(int64, optional, tag = "4")]
    pub wait: Option<i64>,
}

/// `lock.v1beta1.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// Whether the call did what it asked (got, released, found, updated).
    #[prost(bool, tag = "1")]
    pub ok: bool,
}
