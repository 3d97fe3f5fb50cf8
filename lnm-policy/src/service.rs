//! The allowlist as tower services, named in tower's style: a leaf service [`Policy`] (a plain
//! noun: request in, [`Decision`] out), a middleware [`Enforce`] with its [`EnforceLayer`] (only
//! allowed requests reach the inner service), and [`BoxPolicy`], any decision service behind
//! one cloneable type — what the proxy asks, so that an application's own tower layers can sit
//! between the proxy and the allowlist.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lnm_core::hop::HopService;
use lnm_core::{BoxError, ConnInfo, Hop, Stream, Target};
use tower::filter::{Filter, Predicate};
use tower::{Layer, Service, ServiceExt};

use crate::{Allowed, AllowlistHandle, Decision, Request, Rule};
pub use lnm_core::Denied;

/// The allowlist as a leaf service: `Request` in, [`Decision`] out, never fails, always ready.
/// Every call decides with the allowlist current at that moment.
///
/// ```
/// # async fn demo() {
/// use lnm_policy::{Allowlist, Policy, Request};
/// use lnm_policy::tower::ServiceExt;
///
/// let allowlist = Allowlist::builder().external("*.example.com").unwrap().build();
/// let policy = Policy::new(allowlist.into());
/// let request = Request::for_name("a.example.com", "10.2.0.1".parse().unwrap(), 443);
/// let decision = policy.oneshot(request).await.unwrap();
/// assert!(decision.is_allowed());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    handle: AllowlistHandle,
}

impl Policy {
    /// A service deciding with the allowlist behind `handle`.
    pub fn new(handle: AllowlistHandle) -> Self {
        Policy { handle }
    }

    /// The allowlist it decides with.
    pub fn handle(&self) -> &AllowlistHandle {
        &self.handle
    }
}

impl<'a> Service<Request<'a>> for Policy {
    type Response = Decision;
    type Error = Infallible;
    type Future = Ready<Result<Decision, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<'a>) -> Self::Future {
        ready(Ok(self.handle.check(&request)))
    }
}

/// A request the policy middleware can check: it exposes its policy [`Request`].
///
/// Implemented for [`Request`] itself and for the `(Target, ConnInfo)` pair a hop service
/// receives (the target's name and port, the client of the connection).
pub trait PolicyRequest {
    /// The server name, source and port to decide on.
    fn policy_request(&self) -> Request<'_>;
}

impl PolicyRequest for Request<'_> {
    fn policy_request(&self) -> Request<'_> {
        *self
    }
}

impl PolicyRequest for (Target, ConnInfo) {
    fn policy_request(&self) -> Request<'_> {
        let (target, info) = self;
        Request::new(
            Some(target.name.as_str().as_bytes()),
            info.client.ip(),
            target.port,
        )
    }
}

/// An allowed request, passed on to the inner service with what allowed it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Permitted<R> {
    /// The original request.
    pub request: R,
    /// The route and the rule.
    pub allowed: Allowed,
}

impl<R> Permitted<R> {
    /// The rule that allowed the request.
    pub fn rule(&self) -> &Rule {
        &self.allowed.rule
    }
}

impl<R: PolicyRequest> Predicate<R> for AllowlistHandle {
    type Request = Permitted<R>;

    fn check(&mut self, request: R) -> Result<Permitted<R>, BoxError> {
        match AllowlistHandle::check(self, &request.policy_request()) {
            Decision::Allow(allowed) => Ok(Permitted { request, allowed }),
            Decision::Deny(reason) => Err(Box::new(Denied::new(reason))),
        }
    }
}

/// Middleware that lets only allowlisted requests reach the inner service, as [`Permitted`]
/// requests; denied ones fail with a boxed [`Denied`] (tower's `Filter` over the allowlist).
pub type Enforce<S> = Filter<S, AllowlistHandle>;

/// Builds [`Enforce`] around a service — in front of a hop, for instance, where a denial
/// becomes [`lnm_core::Error::Denied`] and the proxy reports it as a denial.
///
/// ```
/// # async fn demo() {
/// use lnm_policy::{Allowlist, Denied, EnforceLayer, Permitted, Reason, Request};
/// use lnm_policy::tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// let handle = Allowlist::builder().external("ok.example").unwrap().build().into();
/// let svc = ServiceBuilder::new()
///     .layer(EnforceLayer::new(handle))
///     .service(service_fn(|p: Permitted<Request<'static>>| async move {
///         Ok::<_, tower::BoxError>(p.rule().to_string())
///     }));
/// let src = "10.0.0.1".parse().unwrap();
/// let rule = svc.clone().oneshot(Request::for_name("ok.example", src, 443)).await.unwrap();
/// assert_eq!(rule, "ok.example (external)");
/// let err = svc.oneshot(Request::for_name("no.example", src, 443)).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Denied>().unwrap().reason, Reason::NotAllowlisted);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EnforceLayer {
    handle: AllowlistHandle,
}

impl EnforceLayer {
    /// A layer deciding with the allowlist behind `handle`.
    pub fn new(handle: AllowlistHandle) -> Self {
        EnforceLayer { handle }
    }
}

impl<S> Layer<S> for EnforceLayer {
    type Service = Enforce<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Filter::new(inner, self.handle.clone())
    }
}

/// A hop behind [`Enforce`] receives [`Permitted`] requests: it connects to the target.
impl<H: Hop + ?Sized> Service<Permitted<(Target, ConnInfo)>> for HopService<H> {
    type Response = Stream;
    type Error = lnm_core::Error;
    type Future = <HopService<H> as Service<(Target, ConnInfo)>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), lnm_core::Error>> {
        Service::<(Target, ConnInfo)>::poll_ready(self, cx)
    }

    fn call(&mut self, permitted: Permitted<(Target, ConnInfo)>) -> Self::Future {
        self.call(permitted.request)
    }
}

/// The future of one decision of a [`BoxPolicy`].
pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send + 'a>>;

/// A decision service behind one object: the shape of any `Service<Request<'a>, Response =
/// Decision>` that is `Clone + Send + Sync`.
trait ErasedPolicy: Send + Sync {
    fn decide<'a>(&self, request: Request<'a>) -> DecisionFuture<'a>;
}

impl<S, E> ErasedPolicy for S
where
    S: for<'a> Service<Request<'a>, Response = Decision, Error = E> + Clone + Send + Sync + 'static,
    for<'a> <S as Service<Request<'a>>>::Future: Send,
    E: Into<BoxError>,
{
    fn decide<'a>(&self, request: Request<'a>) -> DecisionFuture<'a> {
        let service = self.clone();
        Box::pin(async move { service.oneshot(request).await.map_err(Into::into) })
    }
}

/// Any allowlist decision service — [`Policy`], or `Policy` wrapped in the application's own
/// tower layers (audit, rate limits, maintenance windows) — behind one cloneable type.
///
/// The proxy asks a `BoxPolicy` for every connection. A layer denies by answering
/// `Decision::Deny` (with [`Reason::Policy`](crate::Reason::Policy) for its own reasons); an
/// error of the service refuses the connection as a failed decision. Deciding with the plain
/// allowlist takes a fast path without allocation.
///
/// ```
/// # async fn demo() {
/// use lnm_policy::{Allowlist, BoxPolicy, Decision, Policy, Reason, Request};
/// use lnm_policy::tower::{ServiceBuilder, ServiceExt};
///
/// let allowlist = Allowlist::builder().external("*.example.com").unwrap().build();
/// // An application layer: `staging.example.com` is closed, whatever the allowlist says.
/// let policy = BoxPolicy::new(
///     ServiceBuilder::new()
///         .map_response(|d: Decision| match d {
///             Decision::Allow(a) if a.rule.pattern.to_string() == "staging.example.com" => {
///                 Decision::Deny(Reason::Policy("staging_closed"))
///             }
///             other => other,
///         })
///         .service(Policy::new(allowlist.into())),
/// );
/// let src = "10.2.0.1".parse().unwrap();
/// assert!(policy.decide(Request::for_name("a.example.com", src, 443)).await.unwrap().is_allowed());
/// # }
/// ```
#[derive(Clone)]
pub struct BoxPolicy {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Allowlist(AllowlistHandle),
    Service(Arc<dyn ErasedPolicy>),
}

impl std::fmt::Debug for BoxPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Allowlist(_) => f.write_str("BoxPolicy(allowlist)"),
            Inner::Service(_) => f.write_str("BoxPolicy(service)"),
        }
    }
}

impl BoxPolicy {
    /// Erases `service`.
    pub fn new<S, E>(service: S) -> Self
    where
        S: for<'a> Service<Request<'a>, Response = Decision, Error = E>
            + Clone
            + Send
            + Sync
            + 'static,
        for<'a> <S as Service<Request<'a>>>::Future: Send,
        E: Into<BoxError>,
    {
        BoxPolicy {
            inner: Inner::Service(Arc::new(service)),
        }
    }

    /// Decides with the allowlist behind `handle` and nothing else (the fast path).
    pub fn allowlist(handle: AllowlistHandle) -> Self {
        BoxPolicy {
            inner: Inner::Allowlist(handle),
        }
    }

    /// Decides on `request`.
    pub async fn decide(&self, request: Request<'_>) -> Result<Decision, BoxError> {
        match &self.inner {
            Inner::Allowlist(handle) => Ok(handle.check(&request)),
            Inner::Service(service) => service.decide(request).await,
        }
    }
}

impl From<Policy> for BoxPolicy {
    fn from(policy: Policy) -> Self {
        BoxPolicy::allowlist(policy.handle)
    }
}

impl From<AllowlistHandle> for BoxPolicy {
    fn from(handle: AllowlistHandle) -> Self {
        BoxPolicy::allowlist(handle)
    }
}

impl<'a> Service<Request<'a>> for BoxPolicy {
    type Response = Decision;
    type Error = BoxError;
    type Future = DecisionFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<'a>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.decide(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Allowlist, Reason};

    fn handle() -> AllowlistHandle {
        Allowlist::builder()
            .external("*.example.com")
            .unwrap()
            .build()
            .into()
    }

    #[tokio::test]
    async fn a_layered_policy_decides_through_its_layers() {
        let layered = tower::ServiceBuilder::new()
            .map_response(|d: Decision| match d {
                Decision::Allow(_) => Decision::Deny(Reason::Policy("closed")),
                deny => deny,
            })
            .service(Policy::new(handle()));
        let policy = BoxPolicy::new(layered);
        let src = "10.0.0.1".parse().unwrap();
        let d = policy
            .decide(Request::for_name("a.example.com", src, 443))
            .await
            .unwrap();
        assert_eq!(d, Decision::Deny(Reason::Policy("closed")));
        let plain = BoxPolicy::allowlist(handle());
        let d = plain
            .decide(Request::for_name("a.example.com", src, 443))
            .await
            .unwrap();
        assert_eq!(
            d.allowed().unwrap().rule.to_string(),
            "*.example.com (external)"
        );
    }

    #[test]
    fn a_hop_request_is_a_policy_request() {
        let pair = (
            Target::new("a.example.com".parse().unwrap(), 8443),
            ConnInfo::new(
                "10.2.0.9:5000".parse().unwrap(),
                "10.3.0.1:443".parse().unwrap(),
            ),
        );
        let request = pair.policy_request();
        assert_eq!(request.server_name, Some(&b"a.example.com"[..]));
        assert_eq!(
            request.source,
            "10.2.0.9".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(request.port, 8443);
    }

    #[tokio::test]
    async fn a_hop_behind_enforce_is_denied_as_a_denial() {
        use lnm_core::hop::{Internal, TowerHop};
        let enforced = EnforceLayer::new(handle()).layer(HopService::new(Internal::new()));
        let hop = TowerHop::with_info(enforced);
        let err = hop
            .connect(
                &Target::new("other.test".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, lnm_core::Error::Denied(d) if d.reason == Reason::NotAllowlisted),
            "{err}"
        );
        // Allowed: the inner hop is asked (and has no address for the name).
        let err = hop
            .connect(
                &Target::new("a.example.com".parse().unwrap(), 443),
                &ConnInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, lnm_core::Error::UnknownInternal { .. }),
            "{err}"
        );
    }
}
