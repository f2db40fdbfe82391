//! Networks on the daemon side. `service` owns the networks (the predefined `bridge`, `host`
//! and `none`, and user-defined bridges), their records and addresses (`ipam`), published
//! ports and container endpoints; `link` makes bridges, namespaces and veths through netlink;
//! `nft` writes the daemon's nftables table; `dns` answers names on user-defined networks;
//! `resolver` serves them at 127.0.0.11 inside each container on one.

pub mod dns;
pub mod error;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod proxy;
pub mod resolver;
pub mod service;

pub use error::NetworkError;
pub use service::{CreateRequest, Endpoint, EndpointRequest, NetConfig, Network, NetworkService};
