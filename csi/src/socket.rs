//! Serving a tonic router on a unix socket, as the CSI sidecars and the
//! kubelet expect.
//!
//! - [`bind`] creates the parent directory, removes a stale socket left by
//!   an earlier run (only a socket: any other file at the path is an
//!   error, so a typo never deletes data) and binds;
//! - [`serve`] runs the router until the token is cancelled, then removes
//!   the socket file (calls in flight get [`SHUTDOWN_GRACE`] to finish);
//!   every connection goes through [`AuthorityFix`], so that clients which
//!   send the socket's path as `:authority` (the kubelet before 1.26) are
//!   served.

use std::{
    io,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use futures::TryStreamExt;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::uds_authority::AuthorityFix;

/// How long calls in flight may take to finish after shutdown is asked.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{path}: {what}")]
    Path { path: PathBuf, what: &'static str },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("gRPC server on {path}: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Binds a unix socket at `path`, replacing a stale socket.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io_err = |action, source| SocketError::Io {
        path: path.to_owned(),
        action,
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err("cannot create the directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!(socket = %path.display(), "removing a stale socket");
            std::fs::remove_file(path).map_err(|e| io_err("cannot remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(SocketError::Path {
                path: path.to_owned(),
                what: "exists and is not a socket; refusing to replace it",
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot inspect", e)),
    }
    UnixListener::bind(path).map_err(|e| io_err("cannot bind", e))
}

/// Serves `router` on the socket at `path` until `shutdown` is cancelled;
/// the socket file is removed afterwards.
pub async fn serve(
    router: tonic::transport::server::Router,
    path: &Path,
    shutdown: CancellationToken,
) -> Result<(), SocketError> {
    let listener = bind(path)?;
    tracing::info!(socket = %path.display(), "serving CSI");
    let server = router.serve_with_incoming_shutdown(
        UnixListenerStream::new(listener).map_ok(AuthorityFix::new),
        shutdown.cancelled(),
    );
    // A CO keeps its connection open for ever: after the shutdown signal,
    // calls in flight get a grace period, then the server stops anyway.
    let served = tokio::select! {
        served = server => served,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("connections still open after the grace period; stopping");
            Ok(())
        }
    };
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(socket = %path.display(), %error, "cannot remove the socket");
        }
    }
    served.map_err(|source| SocketError::Serve {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_a_regular_file_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sock = dir.path().join("sub/csi.sock");
            drop(bind(&sock).expect("first bind"));
            // The listener is gone but the file stays: a stale socket.
            assert!(sock.exists());
            drop(bind(&sock).expect("bind over a stale socket"));

            let file = dir.path().join("data");
            std::fs::write(&file, b"keep me").expect("write");
            let err = bind(&file).expect_err("a regular file is not replaced");
            assert!(err.to_string().contains("not a socket"), "{err}");
            assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
        });
    }
}
