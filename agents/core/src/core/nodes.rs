//! Node operations: the spec made on first registration, cordon, drain
//! and labels. Each holds its node's lock.

use super::*;

impl Core {
    /// Creates the node's spec on its first registration.
    #[tracing::instrument(skip_all, fields(node = %id))]
    pub async fn ensure_node_spec(&self, id: &str) -> CoreResult<()> {
        // Held for the whole change: orders the changes of this node's spec.
        let _node = self.lock(Resource::Node, id).await;
        let Some(n) = self.registry.node(id) else {
            return Ok(());
        };
        match self.specs.node(id) {
            Some(s) if s.grpc_endpoint == n.grpc_endpoint && s.node_nqn == n.node_nqn => Ok(()),
            Some(mut s) => {
                s.grpc_endpoint = n.grpc_endpoint.clone();
                s.node_nqn = n.node_nqn.clone();
                self.specs.put_node(s).await
            }
            None => {
                self.specs
                    .put_node(NodeSpec {
                        id: id.to_owned(),
                        grpc_endpoint: n.grpc_endpoint.clone(),
                        labels: BTreeMap::new(),
                        cordon_drain_state: CordonDrainState::default(),
                        node_nqn: n.node_nqn.clone(),
                    })
                    .await
            }
        }
    }

    fn node_spec(&self, id: &str) -> CoreResult<NodeSpec> {
        self.specs
            .node(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    #[tracing::instrument(skip_all, fields(node = %id, label, cordon = on))]
    pub async fn cordon(&self, id: &str, label: &str, on: bool) -> CoreResult<Node> {
        // Held for the whole change: orders the changes of this node's spec.
        let _node = self.lock(Resource::Node, id).await;
        let mut spec = self.node_spec(id)?;
        let labels = &mut spec.cordon_drain_state.cordon_labels;
        if on {
            if !labels.iter().any(|l| l == label) {
                labels.push(label.to_owned());
                check_label_count(&format!("node {id}'s cordon"), labels.len())?;
            }
        } else {
            let had = labels.len();
            labels.retain(|l| l != label);
            let drain = &mut spec.cordon_drain_state.drain_labels;
            let had_drain = drain.len();
            drain.retain(|l| l != label);
            if had == labels.len() && had_drain == drain.len() {
                return Err(rest(
                    ErrorKind::NotFound,
                    format!("node {id} has no cordon label {label:?}"),
                ));
            }
            if spec.cordon_drain_state.drain_labels.is_empty() {
                spec.cordon_drain_state.drain_status = None;
            }
        }
        self.specs.put_node(spec).await?;
        info!(node = id, label, cordon = on, "cordon changed");
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    #[tracing::instrument(skip_all, fields(node = %id, label))]
    pub async fn drain(&self, id: &str, label: &str) -> CoreResult<Node> {
        // Held for the whole change: orders the changes of this node's spec.
        let _node = self.lock(Resource::Node, id).await;
        let mut spec = self.node_spec(id)?;
        let st = &mut spec.cordon_drain_state;
        if !st.drain_labels.iter().any(|l| l == label) {
            st.drain_labels.push(label.to_owned());
            check_label_count(&format!("node {id}'s drain"), st.drain_labels.len())?;
        }
        st.drain_status = Some(DrainStatus::Draining);
        self.specs.put_node(spec).await?;
        info!(node = id, label, "drain started");
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }

    #[tracing::instrument(skip_all, fields(node = %id, key))]
    pub async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> CoreResult<Node> {
        // Held for the whole change: orders the changes of this node's spec.
        let _node = self.lock(Resource::Node, id).await;
        let mut spec = self.node_spec(id)?;
        match value {
            Some(v) => {
                spec.labels.insert(key.to_owned(), v.to_owned());
                check_label_count(&format!("node {id}"), spec.labels.len())?;
            }
            None => {
                if spec.labels.remove(key).is_none() {
                    return Err(rest(
                        ErrorKind::NotFound,
                        format!("node {id} has no label {key:?}"),
                    ));
                }
            }
        }
        self.specs.put_node(spec).await?;
        self.node_view(id)
            .ok_or_else(|| CoreError::Rest(RestError::not_found(format!("node {id}"))))
    }
}
