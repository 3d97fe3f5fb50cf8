//! The allowlist as tower services: a leaf [`PolicyService`], a [`PolicyLayer`] middleware and
//! a `tower::filter::Predicate`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::filter::{Filter, Predicate};
use tower::{BoxError, Layer, Service};

use crate::{Allowed, Allowlist, AllowlistHandle, Decision, Reason, Request, Rule};

/// The allowlist as a leaf service: `Request` in, [`Decision`] out, never fails, always ready.
///
/// ```
/// # async fn demo() {
/// use lnm_policy::{Allowlist, PolicyService, Request};
/// use tower::ServiceExt;
///
/// let allowlist = Allowlist::builder().external("*.example.com").unwrap().build();
/// let policy = PolicyService::new(allowlist.into());
/// let request = Request::for_name("a.example.com", "10.2.0.1".parse().unwrap(), 443);
/// let decision = policy.oneshot(request).await.unwrap();
/// assert!(decision.is_allowed());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PolicyService {
    handle: AllowlistHandle,
}

impl PolicyService {
    /// A service deciding with the allowlist behind `handle`.
    pub fn new(handle: AllowlistHandle) -> Self {
        PolicyService { handle }
    }
}

impl<'a> Service<Request<'a>> for PolicyService {
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
pub trait PolicyRequest {
    /// The server name, source and port to decide on.
    fn policy_request(&self) -> Request<'_>;
}

impl PolicyRequest for Request<'_> {
    fn policy_request(&self) -> Request<'_> {
        *self
    }
}

/// An allowed request, passed on to the inner service with what allowed it.
#[derive(Debug, Clone)]
pub struct Permitted<R> {
    /// The original request.
    pub request: R,
    /// The route and rule.
    pub allowed: Allowed,
    /// The allowlist the decision was made with (it may have been swapped since).
    pub allowlist: Arc<Allowlist>,
}

impl<R> Permitted<R> {
    /// The rule that allowed the request.
    pub fn rule(&self) -> &Rule {
        self.allowlist.rule(self.allowed.rule)
    }
}

/// The error a denied request fails with in [`PolicyLayer`] (boxed, as tower filters do;
/// downcast it to read the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("denied by the allowlist: {reason}")]
pub struct Denied {
    /// Why.
    pub reason: Reason,
}

impl<R: PolicyRequest> Predicate<R> for AllowlistHandle {
    type Request = Permitted<R>;

    fn check(&mut self, request: R) -> Result<Permitted<R>, BoxError> {
        let allowlist = self.load();
        match allowlist.check(&request.policy_request()) {
            Decision::Allow(allowed) => Ok(Permitted {
                request,
                allowed,
                allowlist,
            }),
            Decision::Deny(reason) => Err(Box::new(Denied { reason })),
        }
    }
}

/// Middleware that lets only allowlisted requests reach the inner service, as
/// [`Permitted`] requests; denied ones fail with a boxed [`Denied`].
///
/// ```
/// # async fn demo() {
/// use lnm_policy::{Allowlist, Denied, Permitted, PolicyLayer, Reason, Request};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// let handle = Allowlist::builder().external("ok.example").unwrap().build().into();
/// let svc = ServiceBuilder::new()
///     .layer(PolicyLayer::new(handle))
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
pub struct PolicyLayer {
    handle: AllowlistHandle,
}

impl PolicyLayer {
    /// A layer deciding with the allowlist behind `handle`.
    pub fn new(handle: AllowlistHandle) -> Self {
        PolicyLayer { handle }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Filter<S, AllowlistHandle>;

    fn layer(&self, inner: S) -> Self::Service {
        Filter::new(inner, self.handle.clone())
    }
}
