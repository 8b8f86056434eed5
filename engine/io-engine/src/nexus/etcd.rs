//! Nexus info in etcd (or in the embedded store, which speaks the same
//! etcd v3 wire protocol): the engine writes it itself.
//!
//! The endpoint is given with `--ps-endpoint` (`host:port` or
//! `http://host:port`). The connection is lazy: an engine starts even while
//! the store is down; writing the info then fails, and with it the I/O that
//! needed it (see the nexus documentation).

use std::time::Duration;

use io_engine_api::etcd::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use tonic::transport::{Channel, Endpoint};

use super::info::{InfoStore, StoreFuture};

/// A store reached over the etcd v3 gRPC API.
#[derive(Clone)]
pub struct EtcdInfoStore {
    endpoint: String,
    kv: KvClient<Channel>,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdInfoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdInfoStore")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl EtcdInfoStore {
    /// A client of the store at `endpoint`; `timeout` bounds each call.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("invalid store endpoint {endpoint:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        Ok(Self {
            endpoint: url,
            kv: KvClient::new(ep.connect_lazy()),
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl InfoStore for EtcdInfoStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut kv = self.kv.clone();
            let resp = kv
                .range(RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("get {key} from {}: {}", self.endpoint, s.message()))?;
            Ok(resp.into_inner().kvs.into_iter().next().map(|kv| kv.value))
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut kv = self.kv.clone();
            kv.put(PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                ..Default::default()
            })
            .await
            .map_err(|s| format!("put {key} to {}: {}", self.endpoint, s.message()))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.endpoint.clone()
    }
}
