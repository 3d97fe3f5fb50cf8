//! [`RewriteResolver`]: the rewrite decision as a tower service, with another tower service as
//! the fallback for names it does not answer.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use domain::base::iana::Rcode;
use futures_util::future::Either;
use lnm_policy::AllowlistHandle;
use tower::{BoxError, Service, ServiceExt};

use crate::message::{Query, Response};
use crate::rewrite::{Action, RewriteConfig, decide};

/// How a query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over UDP (answers are fitted to the client's size, with TC when they do not fit).
    Udp,
    /// Over TCP.
    Tcp,
}

/// One query and where it came from.
#[derive(Debug, Clone)]
pub struct DnsRequest {
    /// The parsed query.
    pub query: Query,
    /// The client.
    pub source: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
}

type BoxFuture = Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

/// Answers allowlisted names with this level's gateway and hands every other query to
/// `fallback` (a [`Forwarder`](crate::Forwarder) or a [`Refuser`]).
///
/// Never fails: a failing fallback becomes SERVFAIL (and is logged). Always ready.
#[derive(Debug, Clone)]
pub struct RewriteResolver<F> {
    allowlist: AllowlistHandle,
    config: Arc<RewriteConfig>,
    fallback: F,
}

impl<F> RewriteResolver<F> {
    /// A resolver deciding with `allowlist` (an [`AllowlistHandle`]; an `Allowlist` converts
    /// with `.into()`) and answering with `config`.
    pub fn new(allowlist: AllowlistHandle, config: RewriteConfig, fallback: F) -> Self {
        RewriteResolver {
            allowlist,
            config: Arc::new(config),
            fallback,
        }
    }
}

impl<F> Service<DnsRequest> for RewriteResolver<F>
where
    F: Service<DnsRequest, Response = Response> + Clone + Send + 'static,
    F::Error: Into<BoxError>,
    F::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, BoxFuture>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: DnsRequest) -> Self::Future {
        let action = decide(
            &self.allowlist.current(),
            &self.config,
            &request.query,
            request.source.ip(),
        );
        tracing::debug!(client = %request.source, qname = request.query.qname(), qtype = %request.query.qtype(), ?action, "dns query");
        let outcome = match &action {
            Action::Answer(_) => "rewritten",
            Action::Forward => "forwarded",
            Action::Refuse(_) => "refused",
        };
        metrics::counter!("lnm_dns_queries_total", "outcome" => outcome).increment(1);
        match action {
            Action::Answer(addrs) => Either::Left(ready(Ok(request.query.answer(
                Rcode::NOERROR,
                self.config.ttl,
                &addrs,
            )))),
            Action::Refuse(_) => Either::Left(ready(Ok(request.query.empty(Rcode::REFUSED)))),
            Action::Forward => {
                let fallback = self.fallback.clone();
                // A forwarded query waits on the network: everything logged meanwhile (the
                // upstream client's retries and failures) carries the query in a span.
                // Answered queries are decided at once; their one line carries the same fields.
                let span = tracing::info_span!(
                    "dns",
                    client = %request.source,
                    name = request.query.qname(),
                    qtype = %request.query.qtype(),
                );
                Either::Right(Box::pin(tracing::Instrument::instrument(
                    async move {
                        let query = request.query.clone();
                        match fallback.oneshot(request).await {
                            Ok(response) => Ok(response),
                            Err(e) => {
                                let e: BoxError = e.into();
                                tracing::warn!(qname = query.qname(), error = %e, "DNS fallback failed; answering SERVFAIL");
                                Ok(query.empty(Rcode::SERVFAIL))
                            }
                        }
                    },
                    span,
                )))
            }
        }
    }
}

/// The fallback when no upstream is configured: REFUSED for every query it gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refuser;

impl Service<DnsRequest> for Refuser {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: DnsRequest) -> Self::Future {
        ready(Ok(request.query.empty(Rcode::REFUSED)))
    }
}

/// The fallback a gateway builds from its `dns.upstream`: forward to the upstreams, or refuse
/// when there are none. One nameable type for both, so that
/// `RewriteResolver<Fallback>` is the type of every gateway's resolver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fallback {
    /// Forward to upstream servers.
    Forward(crate::Forwarder),
    /// Answer REFUSED.
    Refuse(Refuser),
}

impl Service<DnsRequest> for Fallback {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, BoxFuture>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: DnsRequest) -> Self::Future {
        match self {
            Fallback::Forward(forwarder) => Either::Right(forwarder.call(request)),
            Fallback::Refuse(refuser) => Either::Left(refuser.call(request)),
        }
    }
}
