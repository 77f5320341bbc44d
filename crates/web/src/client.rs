//! The API client the CLI uses: HTTP/1.1 over the daemon's Unix socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
pub use hyper::Method;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::error::{ErrorBody, ErrorDocument};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the switchboard daemon at {path}: {source}; is it running (`switchboard serve`), and is this the right --socket?"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .body.message)]
    Api { status: u16, body: Box<ErrorBody> },
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Client {
        Client {
            socket: socket.as_ref().to_owned(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// Send raw bytes and return the status and body as they came: for
    /// tests of the API's handling of bad input.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "switchboard");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// A request whose successful answer is not JSON (an export, an
    /// archive): its bytes; an error is the API's error document.
    pub async fn bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let ct = body.as_ref().map(|_| "application/json");
        let (status, bytes) = self.raw(method, path, ct, body.unwrap_or_default()).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let doc: ErrorDocument = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::Protocol(format!("status {status}")))?;
        Err(ClientError::Api {
            status: status.as_u16(),
            body: Box::new(doc.error),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let ct = body.as_ref().map(|_| "application/json");
        let (status, bytes) = self.raw(method, path, ct, body.unwrap_or_default()).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
        } else {
            let doc: ErrorDocument = serde_json::from_slice(&bytes).map_err(|_| {
                ClientError::Protocol(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            Err(ClientError::Api {
                status: status.as_u16(),
                body: Box::new(doc.error),
            })
        }
    }
}
