//! Numeric codes of the proxy-wasm ABI 0.2.1, as plain Rust enums.
//!
//! The guest passes these as `i32`; converting them here keeps the import
//! modules free of magic numbers.

/// Status returned by every host call (`proxy_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// What a stream callback tells the host to do next (`proxy_on_request_headers` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass the headers or data on to the next filter.
    Continue,
    /// Stop iteration (and buffer data); the filter resumes or answers later.
    Pause,
}

impl Action {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Continue),
            1 => Some(Self::Pause),
            _ => None,
        }
    }
}

/// Header maps a guest can address (`proxy_map_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::RequestHeaders),
            1 => Some(Self::RequestTrailers),
            2 => Some(Self::ResponseHeaders),
            3 => Some(Self::ResponseTrailers),
            6 => Some(Self::HttpCallResponseHeaders),
            7 => Some(Self::HttpCallResponseTrailers),
            _ => None, // gRPC metadata maps: not hosted here
        }
    }
}

/// Byte buffers a guest can address (`proxy_buffer_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    RequestBody,
    ResponseBody,
    HttpCallResponseBody,
    VmConfiguration,
    PluginConfiguration,
}

impl BufferType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::RequestBody),
            1 => Some(Self::ResponseBody),
            4 => Some(Self::HttpCallResponseBody),
            6 => Some(Self::VmConfiguration),
            7 => Some(Self::PluginConfiguration),
            _ => None, // TCP data and gRPC buffers: not hosted here
        }
    }
}

/// Kinds of metric a guest can define (`proxy_metric_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// Log levels of `proxy_log` (`proxy_log_level_t`), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Trace),
            1 => Some(Self::Debug),
            2 => Some(Self::Info),
            3 => Some(Self::Warn),
            4 => Some(Self::Error),
            5 => Some(Self::Critical),
            _ => None,
        }
    }

    pub(crate) fn as_raw(self) -> i32 {
        self as i32
    }
}

/// Streams `proxy_continue_stream` / `proxy_close_stream` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    Request,
    Response,
}

impl StreamType {
    pub(crate) fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Request),
            1 => Some(Self::Response),
            _ => None, // downstream/upstream TCP streams: not hosted here
        }
    }
}
