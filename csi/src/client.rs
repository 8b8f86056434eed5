//! A gRPC channel to a CSI plugin's unix socket, for tests and tools that
//! act as the CO (the sidecars' side of the socket).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Connects to the plugin serving on `socket` (connects lazily: the
/// first call fails with `Unavailable` while nothing listens).
pub fn channel(socket: &Path) -> Channel {
    let socket: PathBuf = socket.to_owned();
    // The URI is required by the API but unused: every connection goes to
    // the socket.
    Endpoint::from_static("http://csi.invalid").connect_with_connector_lazy(tower::service_fn(
        move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        },
    ))
}
