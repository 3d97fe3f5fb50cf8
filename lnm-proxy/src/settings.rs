//! Per-listener proxy settings, with the defaults of DESIGN §3.

use std::time::Duration;

use ipnet::IpNet;

use lnm_policy::config::{Config, ListenerConfig, ListenerProtocol, defaults};

/// How one proxy listener behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxySettings {
    /// The Purdue level of this gateway (for logs and [`ConnInfo`](lnm_core::ConnInfo)).
    pub level: u8,
    /// How the server name is learnt.
    pub protocol: ListenerProtocol,
    /// The destination port of allowed connections (and the port the policy checks).
    pub destination_port: u16,
    /// Until the hello is complete.
    pub sniff_timeout: Duration,
    /// To open the next hop.
    pub connect_timeout: Duration,
    /// Without bytes in either direction.
    pub idle_timeout: Duration,
    /// The largest ClientHello accepted, in bytes of handshake message (header + body, record
    /// headers not counted; see [`DEFAULT_MAX_CLIENT_HELLO`](crate::sniff::DEFAULT_MAX_CLIENT_HELLO)).
    pub max_client_hello: usize,
    /// The largest HTTP request head buffered.
    pub max_http_head: usize,
    /// Peers (child gateways) that must start with a PROXY v2 header; empty: none.
    pub proxy_protocol_from: Vec<IpNet>,
    /// Connections that already passed this many gateways are refused (loop protection).
    pub max_hops: u8,
    /// Relay bulk transfers between TCP sockets with `splice(2)` (Linux, feature `splice`;
    /// ignored elsewhere). On by default.
    pub zero_copy: bool,
}

impl ProxySettings {
    /// Settings for a listener forwarding to `destination_port`, with the defaults of
    /// [`lnm_policy::config::defaults`] (sniff 10 s, connect 5 s, idle 1 h, ClientHello 64 KiB,
    /// HTTP head 16 KiB, 8 hops, zero-copy relay on).
    pub fn new(protocol: ListenerProtocol, destination_port: u16) -> Self {
        ProxySettings {
            level: 0,
            protocol,
            destination_port,
            sniff_timeout: defaults::SNIFF_TIMEOUT,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            max_client_hello: defaults::MAX_CLIENT_HELLO,
            max_http_head: defaults::MAX_HTTP_HEAD,
            proxy_protocol_from: Vec::new(),
            max_hops: defaults::MAX_HOPS,
            zero_copy: defaults::ZERO_COPY,
        }
    }

    /// The settings of `listener` in `config`.
    pub fn from_config(config: &Config, listener: &ListenerConfig) -> Self {
        ProxySettings {
            level: config.level.unwrap_or(if config.is_top_level() {
                defaults::TOP_LEVEL
            } else {
                0
            }),
            protocol: listener.protocol,
            destination_port: listener.destination_port(),
            sniff_timeout: config.timeouts.sniff,
            connect_timeout: config.timeouts.connect,
            idle_timeout: config.timeouts.idle,
            max_client_hello: config.limits.max_client_hello,
            max_http_head: defaults::MAX_HTTP_HEAD,
            proxy_protocol_from: if config.proxy_protocol.accept {
                config.proxy_protocol.accept_from.clone()
            } else {
                Vec::new()
            },
            max_hops: config.limits.max_hops,
            zero_copy: config.relay.zero_copy,
        }
    }

    /// Sets the level.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level;
        self
    }

    /// Sets the sniff timeout.
    pub fn sniff_timeout(mut self, timeout: Duration) -> Self {
        self.sniff_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Requires a PROXY v2 header from peers in `from` (child gateways).
    pub fn accept_proxy_protocol(mut self, from: Vec<IpNet>) -> Self {
        self.proxy_protocol_from = from;
        self
    }

    /// Sets the hop limit.
    pub fn max_hops(mut self, max_hops: u8) -> Self {
        self.max_hops = max_hops;
        self
    }

    /// Turns the zero-copy relay on or off.
    pub fn zero_copy(mut self, on: bool) -> Self {
        self.zero_copy = on;
        self
    }

    /// Sets the ClientHello cap (bytes of handshake message, header + body).
    pub fn max_client_hello(mut self, cap: usize) -> Self {
        self.max_client_hello = cap;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_configuration() {
        let parsed = Config::parse(
            "level: 3\nparentIpAddr: 10.4.0.1\nrelay: {zeroCopy: true}\nlimits: {maxHops: 3}\n",
            "t",
        )
        .unwrap()
        .config;
        let listener = &parsed.effective_listeners()[0];
        let settings = ProxySettings::from_config(&parsed, listener);
        assert_eq!((settings.level, settings.max_hops), (3, 3));
        assert!(settings.zero_copy);
        let defaults = Config::parse("level: 4\n", "t").unwrap().config;
        let listener = &defaults.effective_listeners()[0];
        assert!(!ProxySettings::from_config(&defaults, listener).zero_copy);
    }
}
