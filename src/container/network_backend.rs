//! [`NetworkBackend`] for the network router: the network service for the networks
//! themselves, and the container manager for connect and disconnect (a container's record
//! names its networks) and for the `Containers` of inspect.

use std::sync::Arc;

use async_trait::async_trait;
use bollard_stubs::models::EndpointSettings;
use serde_json::{json, Map, Value};

use super::manager::ContainerManager;
use super::network::{endpoint_request, owns_namespace, Rewrite};
use crate::api::NetworkBackend;
use crate::errors::Kinded;
use crate::filters::Filters;
use crate::network::record::NetworkRecord;
use crate::network::service::{CreateRequest, JoinRequest};
use crate::network::NetworkError;

/// moby's text for a container on `host` or another's namespace (and for `host` itself).
const SHARED_NAMESPACE: &str = "container sharing network namespace with another container or host cannot be connected to any other network";

/// The network router's backend.
pub struct NetworkRouter {
    pub containers: Arc<ContainerManager>,
}

fn net_err(e: super::ContainerError) -> NetworkError {
    NetworkError::new(e.kind(), e.to_string())
}

impl NetworkRouter {
    /// A network in dockerd's inspect shape (`GET /networks/{id}`, and each entry of the
    /// list with `Containers` empty, as dockerd lists them).
    fn view(&self, n: &NetworkRecord, with_containers: bool) -> Value {
        let mut config = Vec::new();
        for p in &n.pools {
            let mut c = Map::new();
            let auto = !p.user_subnet;
            if p.user_subnet || auto {
                c.insert("Subnet".into(), json!(p.subnet.to_string()));
            }
            if let Some(r) = &p.ip_range {
                c.insert("IPRange".into(), json!(r.to_string()));
            }
            if p.user_gateway || auto {
                c.insert("Gateway".into(), json!(p.gateway.to_string()));
            }
            if !p.aux.is_empty() {
                let aux: Map<String, Value> = p
                    .aux
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v.to_string())))
                    .collect();
                c.insert("AuxiliaryAddresses".into(), Value::Object(aux));
            }
            config.push(Value::Object(c));
        }
        let mut containers = Map::new();
        if with_containers {
            for (cid, e) in &n.endpoints {
                containers.insert(
                    cid.clone(),
                    json!({
                        "Name": e.container_name,
                        "EndpointID": e.id,
                        "MacAddress": e.mac,
                        "IPv4Address": e.ipv4.map(|i| format!("{i}/{}", e.prefix_v4)).unwrap_or_default(),
                        "IPv6Address": e.ipv6.map(|i| format!("{i}/{}", e.prefix_v6)).unwrap_or_default(),
                    }),
                );
            }
        }
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": n.enable_ipv4,
            "EnableIPv6": n.enable_ipv6,
            "IPAM": {
                "Driver": "default",
                "Options": n.ipam_options,
                "Config": config,
            },
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": { "Network": "" },
            "ConfigOnly": false,
            "Containers": containers,
            "Options": n.options,
            "Labels": n.labels,
        })
    }
}

#[async_trait]
impl NetworkBackend for NetworkRouter {
    fn network_list(&self, filters: Filters) -> Result<Vec<Value>, NetworkError> {
        let nets = self.containers.network_service().list(&filters)?;
        Ok(nets.iter().map(|n| self.view(n, false)).collect())
    }

    fn network_inspect(&self, term: &str, _verbose: bool) -> Result<Value, NetworkError> {
        let n = self.containers.network_service().find(term)?;
        Ok(self.view(&n, true))
    }

    async fn network_create(&self, req: CreateRequest) -> Result<(String, String), NetworkError> {
        let n = self.containers.network_service().create(req).await?;
        Ok((n.id, String::new()))
    }

    async fn network_remove(&self, term: String) -> Result<(), NetworkError> {
        // As dockerd: only running containers (endpoints) keep a network; a stopped one that
        // names it fails its next start with `network … not found`.
        self.containers.network_service().remove(&term).await
    }

    async fn network_prune(&self, filters: Filters) -> Result<Vec<String>, NetworkError> {
        // As moby's `localNetworkPrune`: only endpoints (running containers) keep a network;
        // a stopped container that names a pruned one fails its next start with
        // `network … not found`, as after `network rm`.
        self.containers.network_service().prune(&filters).await
    }

    async fn network_connect(
        &self,
        network: String,
        container: String,
        settings: EndpointSettings,
    ) -> Result<(), NetworkError> {
        self.containers
            .connect_network(&network, &container, settings)
            .await
            .map_err(net_err)
    }

    async fn network_disconnect(
        &self,
        network: String,
        container: String,
        force: bool,
    ) -> Result<(), NetworkError> {
        self.containers
            .disconnect_network(&network, &container, force)
            .await
            .map_err(net_err)
    }
}

impl ContainerManager {
    /// `docker network connect`: recorded in the container; a running container gets its
    /// endpoint now, a stopped one at its next start.
    pub async fn connect_network(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        mut settings: EndpointSettings,
    ) -> Result<(), super::ContainerError> {
        let c = self.get(container)?;
        let _op = c.op.lock().await;
        let n = self.network.find(network)?;
        let r = c.record();
        let mode = r.host_config.network_mode.clone().unwrap_or_default();
        if !owns_namespace(&mode) && mode != "host" {
            return Err(super::ContainerError::invalid(SHARED_NAMESPACE));
        }
        // moby's `updateNetworkSettings`.
        if mode != "host" && n.driver == "host" {
            return Err(super::ContainerError::invalid(
                "cannot connect container to host network - container must be created in host network mode",
            ));
        }
        for (name, s) in &r.networks {
            let Ok(sn) = self.network.find(
                s.network_id
                    .as_deref()
                    .filter(|i| !i.is_empty())
                    .unwrap_or(name),
            ) else {
                continue;
            };
            if sn.name == n.name {
                continue;
            }
            if sn.driver == "host" || n.driver == "host" {
                return Err(super::ContainerError::invalid(SHARED_NAMESPACE));
            }
            if sn.name == "none" || n.name == "none" {
                return Err(super::ContainerError::invalid(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode",
                ));
            }
        }
        if r.networks.contains_key(&n.name) {
            return Err(super::ContainerError::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                r.name, n.name
            )));
        }
        if n.is_default_bridge() && settings.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(super::ContainerError::invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        settings.network_id = Some(n.id.clone());
        let running = r.state.status.is_running();
        let had_resolver = running && self.on_user_network(&r.id);
        if !n.is_bridge() {
            // `none` (the only other network a container can be connected to here): no
            // endpoint, only the record, and the event a running container's gets.
            if running {
                self.network.announce("connect", &n.name, &r.id);
            }
            let name = n.name.clone();
            self.update(&c, move |r| {
                r.networks.insert(name, settings);
            })?;
            return Ok(());
        }
        if running {
            let req = JoinRequest {
                container_id: r.id.clone(),
                container_name: r.name.clone(),
                hostname: r.config.hostname.clone().unwrap_or_default(),
                netns: self.netns_file(&r.id),
                networks: vec![endpoint_request(&n.name, &settings)],
                ports: Vec::new(),
                dns: r
                    .host_config
                    .dns
                    .iter()
                    .flatten()
                    .filter_map(|d| d.parse().ok())
                    .collect(),
            };
            self.network.connect(&req).await?;
        }
        let name = n.name.clone();
        let r = self.update(&c, move |r| {
            r.networks.insert(name, settings);
        })?;
        if running {
            self.rewrite_network_files(&r, had_resolver);
        }
        Ok(())
    }

    /// Whether the container has an endpoint on a user network now (and so the embedded
    /// resolver in its `/etc/resolv.conf`).
    fn on_user_network(&self, id: &str) -> bool {
        self.network
            .attached(id)
            .iter()
            .any(|a| !crate::network::service::PREDEFINED.contains(&a.network_name.as_str()))
    }

    /// After a running container's connect or disconnect: `/etc/hosts` with its addresses
    /// now, and `/etc/resolv.conf` when its embedded resolver started or stopped. A failure
    /// is logged: the network change itself is done.
    fn rewrite_network_files(&self, r: &super::record::Record, had_resolver: bool) {
        let how = if self.on_user_network(&r.id) == had_resolver {
            Rewrite::HostsOnly
        } else {
            Rewrite::Running
        };
        let attached = self.network.attached(&r.id);
        if let Err(e) = self.write_network_files(r, &attached, how) {
            tracing::warn!("network files of {}: {e}", r.id);
        }
    }

    /// `docker network disconnect`.
    pub async fn disconnect_network(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), super::ContainerError> {
        let c = match self.get(container) {
            Ok(c) => c,
            Err(e) if force => {
                // A container that is gone: drop its endpoint if one is left.
                let _ = e;
                self.network.disconnect(container, network).await.ok();
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let _op = c.op.lock().await;
        let n = self.network.find(network)?;
        let r = c.record();
        let running = r.state.status.is_running();
        if !r.networks.contains_key(&n.name) {
            // dockerd's two texts: a stopped container's record, a running one's endpoint.
            let the = if running { "" } else { "the " };
            return Err(super::ContainerError::forbidden(format!(
                "container {} is not connected to {the}network {}",
                r.id, n.name
            )));
        }
        let mode = r.host_config.network_mode.as_deref().unwrap_or_default();
        if running && mode == "host" && n.driver == "host" {
            return Err(super::ContainerError::invalid(
                "cannot disconnect container from host network - container was created in host network mode",
            ));
        }
        let had_resolver = running && self.on_user_network(&r.id);
        if running && n.is_bridge() {
            self.network.disconnect(&r.id, &n.id).await?;
        } else if running {
            // `none` has no endpoint to remove (moby's null driver has nothing to undo).
            self.network.announce("disconnect", &n.name, &r.id);
        }
        let name = n.name.clone();
        let r = self.update(&c, move |r| {
            r.networks.remove(&name);
        })?;
        if running {
            self.rewrite_network_files(&r, had_resolver);
        }
        Ok(())
    }
}
