//! The `jobs.v1` messages `spiral/roadrunner-jobs` and `rr jobs` send (field numbers as rr's
//! `proto/jobs/v1/jobs.proto`).

use std::collections::HashMap;

/// `jobs.v1.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The job.
    #[prost(message, optional, tag = "1")]
    pub job: Option<Job>,
}

/// `jobs.v1.PushBatchRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushBatchRequest {
    /// The jobs.
    #[prost(message, repeated, tag = "1")]
    pub jobs: Vec<Job>,
}

/// `jobs.v1.Job`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Job {
    /// The job's name (a PHP class, usually).
    #[prost(string, tag = "1")]
    pub job: String,
    /// Its id (a UUID from the PHP client).
    #[prost(string, tag = "2")]
    pub id: String,
    /// Its payload.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// Its headers.
    #[prost(map = "string, message", tag = "4")]
    pub headers: HashMap<String, HeaderValue>,
    /// Where and how it runs.
    #[prost(message, optional, tag = "5")]
    pub options: Option<Options>,
}

/// `jobs.v1.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// The header's values.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `jobs.v1.Options`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Options {
    /// Lower runs first; 0 takes the pipeline's.
    #[prost(int64, tag = "1")]
    pub priority: i64,
    /// The pipeline.
    #[prost(string, tag = "2")]
    pub pipeline: String,
    /// Seconds before it may run.
    #[prost(int64, tag = "3")]
    pub delay: i64,
    /// Acknowledged when taken (brokers; the memory driver ignores it).
    #[prost(bool, tag = "6")]
    pub auto_ack: bool,
}

/// `jobs.v1.DeclareRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeclareRequest {
    /// The pipeline's options, as strings.
    #[prost(map = "string, string", tag = "1")]
    pub pipeline: HashMap<String, String>,
}

/// `jobs.v1.Pipelines`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pipelines {
    /// Names.
    #[prost(string, repeated, tag = "1")]
    pub pipelines: Vec<String>,
}

/// `jobs.v1.Stats`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stats {
    /// One per pipeline.
    #[prost(message, repeated, tag = "1")]
    pub stats: Vec<Stat>,
}

/// `jobs.v1.Stat`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stat {
    /// Name.
    #[prost(string, tag = "1")]
    pub pipeline: String,
    /// Driver.
    #[prost(string, tag = "2")]
    pub driver: String,
    /// Queue (the pipeline's name for memory).
    #[prost(string, tag = "3")]
    pub queue: String,
    /// Jobs taken and not acknowledged.
    #[prost(int64, tag = "4")]
    pub active: i64,
    /// Jobs with a delay, not acknowledged.
    #[prost(int64, tag = "5")]
    pub delayed: i64,
    /// Always 0 for memory.
    #[prost(int64, tag = "6")]
    pub reserved: i64,
    /// Consuming.
    #[prost(bool, tag = "7")]
    pub ready: bool,
    /// The pipeline's priority.
    #[prost(uint64, tag = "8")]
    pub priority: u64,
}

/// `jobs.v1.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}
