//! Server reflection (spec grpc [beyond]): `grpc.reflection.v1.ServerReflection` and its
//! `v1alpha` twin, served from the loaded protos, so `grpcurl`-style tools work without
//! local protos. A bidirectional stream: one response per request, until the client ends
//! its side. Requests are bounded by `max_recv_msg_size` each.

use super::call::{send_message, CallStatus};
use super::GrpcShared;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto};
use ringrunner_protocol::grpc::{self, Code};

/// The services' full names.
pub const SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// `ServerReflectionRequest`.
#[derive(Clone, PartialEq, Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(string, optional, tag = "3")]
    file_by_filename: Option<String>,
    #[prost(string, optional, tag = "4")]
    file_containing_symbol: Option<String>,
    #[prost(string, optional, tag = "6")]
    all_extension_numbers_of_type: Option<String>,
    #[prost(string, optional, tag = "7")]
    list_services: Option<String>,
}

/// `ServerReflectionResponse`.
#[derive(Clone, PartialEq, Message)]
struct ReflectionResponse {
    #[prost(string, tag = "1")]
    valid_host: String,
    #[prost(message, optional, tag = "2")]
    original_request: Option<ReflectionRequest>,
    #[prost(message, optional, tag = "4")]
    file_descriptor_response: Option<FileDescriptorResponse>,
    #[prost(message, optional, tag = "6")]
    list_services_response: Option<ListServiceResponse>,
    #[prost(message, optional, tag = "7")]
    error_response: Option<ErrorResponse>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// Serves one reflection stream.
pub(super) async fn serve(
    method: &str,
    mut body: RecvStream,
    respond: &mut SendResponse<Bytes>,
    shared: &GrpcShared,
) -> Result<(), CallStatus> {
    if method != "ServerReflectionInfo" {
        return Err(CallStatus::new(
            Code::Unimplemented,
            format!("unknown method {method} for service {}", SERVICES[0]),
        ));
    }
    let cancelled = |error: h2::Error| CallStatus::new(Code::Cancelled, error.to_string());
    let mut head = http::Response::new(());
    head.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut send = respond.send_response(head, false).map_err(cancelled)?;
    let max = shared.config.max_recv_msg_size_bytes;
    let mut buffer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(cancelled)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buffer.extend_from_slice(&chunk);
        while let Some(message) = grpc::take_message(&mut buffer, max)? {
            let request = ReflectionRequest::decode(message.as_slice()).map_err(|error| {
                CallStatus::new(
                    Code::InvalidArgument,
                    format!("grpc: failed to unmarshal the received message: {error}"),
                )
            })?;
            let response = answer(request, shared);
            send_message(&mut send, &response.encode_to_vec()).await?;
        }
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    send.send_trailers(trailers).map_err(cancelled)
}

fn answer(request: ReflectionRequest, shared: &GrpcShared) -> ReflectionResponse {
    let files = &shared.services.files;
    let mut response = ReflectionResponse {
        valid_host: request.host.clone(),
        original_request: Some(request.clone()),
        ..ReflectionResponse::default()
    };
    let found = |file: Option<&FileDescriptorProto>, what: &str| match file {
        Some(file) => (
            Some(FileDescriptorResponse {
                file_descriptor_proto: vec![file.encode_to_vec()],
            }),
            None,
        ),
        None => (None, Some(not_found(what))),
    };
    let (files_found, error) = if request.list_services.is_some() {
        let mut names: Vec<String> = shared.services.methods.keys().cloned().collect();
        names.push(super::health::SERVICE.into());
        names.extend(SERVICES.iter().map(|name| (*name).to_owned()));
        response.list_services_response = Some(ListServiceResponse {
            service: names
                .into_iter()
                .map(|name| ServiceResponse { name })
                .collect(),
        });
        (None, None)
    } else if let Some(name) = &request.file_by_filename {
        found(files.iter().find(|file| file.name() == name), name)
    } else if let Some(symbol) = &request.file_containing_symbol {
        found(files.iter().find(|file| declares(file, symbol)), symbol)
    } else if let Some(symbol) = &request.all_extension_numbers_of_type {
        (None, Some(not_found(symbol)))
    } else {
        (
            None,
            Some(ErrorResponse {
                error_code: Code::Unimplemented as i32,
                error_message: "this reflection request is not supported".into(),
            }),
        )
    };
    response.file_descriptor_response = files_found;
    response.error_response = error;
    response
}

fn not_found(what: &str) -> ErrorResponse {
    ErrorResponse {
        error_code: Code::NotFound as i32,
        error_message: format!("{what} not found"),
    }
}

/// Whether `file` declares `symbol` (a service, a method, a message or an enum by full
/// name).
fn declares(file: &FileDescriptorProto, symbol: &str) -> bool {
    let package = file.package();
    let full = |name: &str| {
        if package.is_empty() {
            name.to_owned()
        } else {
            format!("{package}.{name}")
        }
    };
    let services = file.service.iter().any(|service| {
        let name = full(service.name());
        name == symbol
            || service
                .method
                .iter()
                .any(|method| format!("{name}.{}", method.name()) == symbol)
    });
    let enums = file.enum_type.iter().any(|e| full(e.name()) == symbol);
    services
        || enums
        || file
            .message_type
            .iter()
            .any(|message| declares_message(message, &full(message.name()), symbol, 0))
}

/// Nesting searched at most (a parsed file is bounded by the reader's nesting cap too).
const MAX_MESSAGE_NESTING: usize = 64;

fn declares_message(message: &DescriptorProto, name: &str, symbol: &str, depth: usize) -> bool {
    if name == symbol {
        return true;
    }
    if depth >= MAX_MESSAGE_NESTING {
        return false;
    }
    message
        .enum_type
        .iter()
        .any(|e| format!("{name}.{}", e.name()) == symbol)
        || message.nested_type.iter().any(|nested| {
            declares_message(
                nested,
                &format!("{name}.{}", nested.name()),
                symbol,
                depth + 1,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_found_by_full_name() {
        let file = crate::plugins::grpc::proto::parse_source(
            "e.proto",
            "syntax = \"proto3\"; package a.b; service S { rpc M (T) returns (T); } message T { message U {} enum E { X = 0; } }",
        )
        .unwrap();
        for symbol in ["a.b.S", "a.b.S.M", "a.b.T", "a.b.T.U", "a.b.T.E"] {
            assert!(declares(&file, symbol), "{symbol}");
        }
        assert!(!declares(&file, "a.b.Nope"));
        assert!(!declares(&file, "S"));
    }
}
