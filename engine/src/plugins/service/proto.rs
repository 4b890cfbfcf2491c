//! The `service.v1` messages `spiral/roadrunner-services` sends and reads (field numbers as
//! rr's `proto/service/v1/service.proto`).

/// `service.v1.Create`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Create {
    /// The service's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The command line.
    #[prost(string, tag = "2")]
    pub command: String,
    /// Copies to run.
    #[prost(int64, tag = "3")]
    pub process_num: i64,
    /// Maximum run time, seconds (0: none).
    #[prost(int64, tag = "4")]
    pub exec_timeout: i64,
    /// Restart after any exit.
    #[prost(bool, tag = "5")]
    pub remain_after_exit: bool,
    /// Extra environment.
    #[prost(map = "string, string", tag = "6")]
    pub env: std::collections::HashMap<String, String>,
    /// Delay before a restart, seconds (0: 30).
    #[prost(uint64, tag = "7")]
    pub restart_sec: u64,
    /// Log output under `service.<name>`.
    #[prost(bool, tag = "8")]
    pub service_name_in_logs: bool,
    /// Grace time between the stop signal and SIGKILL, seconds (0: 5).
    #[prost(uint64, tag = "9")]
    pub timeout_stop_sec: u64,
}

/// `service.v1.Service`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceName {
    /// The service's name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `service.v1.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// Never set (rr's).
    #[prost(string, tag = "1")]
    pub message: String,
    /// Success.
    #[prost(bool, tag = "2")]
    pub ok: bool,
}

/// `common.v1.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorStatus {
    /// Always 0 here.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why the process's state cannot be given.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `service.v1.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// CPU over the process's life, percent of one core.
    #[prost(float, tag = "1")]
    pub cpu_percent: f32,
    /// The process id.
    #[prost(int32, tag = "2")]
    pub pid: i32,
    /// RSS, bytes.
    #[prost(uint64, tag = "3")]
    pub memory_usage: u64,
    /// The command as run.
    #[prost(string, tag = "4")]
    pub command: String,
    /// Set when the state cannot be read (not running).
    #[prost(message, optional, tag = "5")]
    pub status: Option<ErrorStatus>,
}

/// `service.v1.Statuses`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Statuses {
    /// One per process.
    #[prost(message, repeated, tag = "1")]
    pub status: Vec<Status>,
}

/// `service.v1.List`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct List {
    /// The services' names.
    #[prost(string, repeated, tag = "1")]
    pub services: Vec<String>,
}
